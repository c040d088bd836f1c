import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = Σ x² over axes: dx = 2x · dy (broadcast back). */
export const ReduceSumSquare: GradientRule = (ctx) => [
  ctx.b.mul(ctx.b.scale(ctx.input(0), 2), expandReduced(ctx, ctx.dyOrZeros(0))),
];
