import type { GradientRule } from './types.js';

/** y = σ(x): dx = dy · y · (1 − y). */
export const Sigmoid: GradientRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.output(0);
  return [b.mul(ctx.dyOrZeros(0), b.mul(y, b.sub(b.scalarLike(1, y), y)))];
};
