import { attrFloat } from '../attrs.js';
import { normalizeBackward, normalizeForward, range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y = scale[c] · x̂ + B[c], x̂ normalized per (n, c) over the spatial axes. SD exports build GroupNorm from this
 * (Reshape → InstanceNormalization → Reshape → Mul → Add). x̂ and 1/σ are recomputed from x.
 */
export const InstanceNormalization: GradientRule = (ctx) => {
  const { b } = ctx;
  const [x, scale] = [ctx.input(0), ctx.input(1)];
  const rank = requireRank(ctx, x);
  const eps = attrFloat(ctx.node, 'epsilon', 1e-5);
  const dy = ctx.dyOrZeros(0);
  const spatial = range(2, rank);
  const outer = [0, ...spatial];
  const { xhat, inv } = normalizeForward(b, x, spatial, eps);
  const out: (string | null)[] = [null, null, null];
  if (ctx.needs[0]) {
    const g = b.mul(dy, b.unsqueeze(scale, range(1, rank - 1)));
    out[0] = normalizeBackward(b, g, xhat, inv, spatial);
  }
  if (ctx.needs[1]) out[1] = b.reduceSum(b.mul(dy, xhat), outer, false);
  if (ctx.needs[2]) out[2] = b.reduceSum(dy, outer, false);
  return out;
};
