import type { GradientRule } from './types.js';

/** y = max(x, 0): dx = dy where x > 0 (0 at x = 0, as PyTorch). */
export const Relu: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const dy = ctx.dyOrZeros(0);
  const zero = b.scalarLike(0, x);
  return [b.op('Where', [b.op('Greater', [x, zero]), dy, zero])];
};
