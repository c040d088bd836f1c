import { attrFloat, attrInt } from '../attrs.js';
import { normAxis, normalizeBackward, normalizeForward, range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * LayerNormalization (opset 17): y = Scale · x̂ + B over the axes from `axis` on. Only Y may carry a gradient
 * (the optional Mean/InvStdDev outputs are statistics, not features).
 */
export const LayerNormalization: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const [x, scale, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  if (ctx.dy[1] || ctx.dy[2])
    throw ctx.error('gradients through the Mean/InvStdDev outputs are not supported');
  const rank = requireRank(ctx, x);
  const axes = range(normAxis(attrInt(node, 'axis', -1), rank), rank);
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const dy = ctx.dyOrZeros(0);
  const { xhat, inv } = normalizeForward(b, x, axes, eps);
  return [
    ctx.needs[0] ? normalizeBackward(b, b.mul(dy, scale), xhat, inv, axes) : null,
    ctx.needs[1] ? b.reduceToShape(b.mul(dy, xhat), scale) : null,
    bias && ctx.needs[2] ? b.reduceToShape(dy, bias) : null,
  ];
};
