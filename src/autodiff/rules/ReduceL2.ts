import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = √(Σ x²) over axes: dx = x · dy / y (broadcast back; undefined where y = 0, as in PyTorch's norm). */
export const ReduceL2: GradientRule = (ctx) => {
  const { b } = ctx;
  return [b.mul(ctx.input(0), expandReduced(ctx, b.div(ctx.dyOrZeros(0), ctx.output(0))))];
};
