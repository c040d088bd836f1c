import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = log Σ eˣ over axes: dx = dy · e^(x − y) (softmax weights, broadcast back). */
export const ReduceLogSumExp: GradientRule = (ctx) => {
  const { b } = ctx;
  const weights = b.op('Exp', [b.sub(ctx.input(0), expandReduced(ctx, ctx.output(0)))]);
  return [b.mul(weights, expandReduced(ctx, ctx.dyOrZeros(0)))];
};
