import { attrInt } from '../attrs.js';
import { normAxis, range, requireRank } from './common.js';
import type { GradientContext, GradientRule } from './types.js';

/**
 * The axes a Softmax/LogSoftmax normalizes over: one axis (opset 13+, default −1), or before opset 13 all axes
 * from `axis` (default 1) on, since the input was coerced to 2-D there.
 */
export function softmaxAxes(ctx: GradientContext): number[] {
  const rank = requireRank(ctx, ctx.input(0));
  if (ctx.opset >= 13) return [normAxis(attrInt(ctx.node, 'axis', -1), rank)];
  return range(normAxis(attrInt(ctx.node, 'axis', 1), rank), rank);
}

/** y = softmax(x): dx = y · (dy − Σ(dy · y)) over the softmax axes. */
export const Softmax: GradientRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.output(0);
  const dy = ctx.dyOrZeros(0);
  const dot = b.reduceSum(b.mul(dy, y), softmaxAxes(ctx), true);
  return [b.mul(y, b.sub(dy, dot))];
};
