import { attrFloat, attrInt } from '../attrs.js';
import { normalizeBackward, normalizeForward, range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * GroupNormalization: x [N, C, …] normalized over groups of C/G channels and all spatial positions. Opset 21
 * applies scale/bias per channel ([C]); opset 18 applied them per group ([G]).
 */
export const GroupNormalization: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const [x, scale, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  const rank = requireRank(ctx, x);
  const groups = attrInt(node, 'num_groups', 0);
  if (groups <= 0) throw ctx.error('num_groups must be positive');
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const dy = ctx.dyOrZeros(0);
  const grouped = b.reshape(x, [0, groups, -1]);
  const { xhat: xhatG, inv } = normalizeForward(b, grouped, [2], eps);
  const out: (string | null)[] = [null, null, null];
  if (ctx.opset >= 21) {
    const xhat = b.reshapeLike(xhatG, x);
    const outer = [0, ...range(2, rank)];
    if (ctx.needs[0]) {
      const g = b.reshape(b.mul(dy, b.unsqueeze(scale, range(1, rank - 1))), [0, groups, -1]);
      out[0] = b.reshapeLike(normalizeBackward(b, g, xhatG, inv, [2]), x);
    }
    if (ctx.needs[1]) out[1] = b.reduceSum(b.mul(dy, xhat), outer, false);
    if (bias && ctx.needs[2]) out[2] = b.reduceSum(dy, outer, false);
  } else {
    const dyG = b.reshape(dy, [0, groups, -1]);
    if (ctx.needs[0]) {
      const g = b.mul(dyG, b.unsqueeze(scale, [1]));
      out[0] = b.reshapeLike(normalizeBackward(b, g, xhatG, inv, [2]), x);
    }
    if (ctx.needs[1]) out[1] = b.reduceSum(b.mul(dyG, xhatG), [0, 2], false);
    if (bias && ctx.needs[2]) out[2] = b.reduceSum(dyG, [0, 2], false);
  }
  return out;
};
