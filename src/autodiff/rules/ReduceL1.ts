import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = Σ |x| over axes: dx = sign(x) · dy (broadcast back). */
export const ReduceL1: GradientRule = (ctx) => [
  ctx.b.mul(ctx.b.op('Sign', [ctx.input(0)]), expandReduced(ctx, ctx.dyOrZeros(0))),
];
