import { isStatic } from '../infer.js';
import type { GradientRule } from './types.js';

/** y = mean of x over the spatial axes (keepdims): dx = dy broadcast back / (number of positions). */
export const GlobalAveragePool: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const dx = b.expandLike(ctx.dyOrZeros(0), x);
  const xs = ctx.graph.shape(x);
  if (xs && isStatic(xs)) return [b.scale(dx, 1 / xs.slice(2).reduce((a, c) => a * c, 1))];
  const type = b.typeOf(x);
  const positions = b.div(b.cast(b.op('Size', [x]), type), b.cast(b.op('Size', [ctx.output(0)]), type));
  return [b.div(dx, positions)];
};
