import { isFloatType } from '../onnx_io.js';
import type { GradientRule } from './types.js';

/** y = cast(x) between float types (fp16 ↔ fp32 ↔ fp64): dx = cast(dy) back to x's type. */
export const Cast: GradientRule = (ctx) => {
  const x = ctx.input(0);
  const type = ctx.b.typeOf(x);
  if (!isFloatType(type)) return [null];
  return [ctx.b.cast(ctx.dyOrZeros(0), type)];
};
