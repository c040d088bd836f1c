import type { GradientRule } from './types.js';

/** y = √x: dx = dy / (2y). */
export const Sqrt: GradientRule = (ctx) => {
  const { b } = ctx;
  return [b.div(b.scale(ctx.dyOrZeros(0), 0.5), ctx.output(0))];
};
