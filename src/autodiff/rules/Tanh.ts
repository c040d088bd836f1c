import type { GradientRule } from './types.js';

/** y = tanh x: dx = dy · (1 − y²). */
export const Tanh: GradientRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.output(0);
  return [b.mul(ctx.dyOrZeros(0), b.sub(b.scalarLike(1, y), b.mul(y, y)))];
};
