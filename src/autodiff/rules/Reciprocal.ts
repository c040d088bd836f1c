import type { GradientRule } from './types.js';

/** y = 1/x: dx = −dy · y². */
export const Reciprocal: GradientRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.output(0);
  return [b.neg(b.mul(ctx.dyOrZeros(0), b.mul(y, y)))];
};
