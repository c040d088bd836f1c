import { attrInt } from '../attrs.js';
import { normAxis, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y = concat(x₀, x₁, …; axis): dxᵢ = the slice of dy at xᵢ's offset. One Split when the sizes along the axis
 * are static; otherwise Slices with offsets computed from the inputs' runtime shapes.
 */
export const Concat: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const inputs = node.input;
  const rank = requireRank(ctx, ctx.input(0));
  const axis = normAxis(attrInt(node, 'axis', 0), rank);
  const dy = ctx.dyOrZeros(0);
  const sizes = inputs.map((x) => ctx.graph.shape(x)?.[axis]);
  if (sizes.every((s) => typeof s === 'number')) {
    const parts = b.split(dy, axis, sizes as number[]);
    return parts.map((p, i) => (ctx.needs[i] ? p : null));
  }
  let offset = b.int64s([0]);
  return inputs.map((x, i) => {
    const end = b.add(offset, b.dim(x, axis));
    const part = ctx.needs[i] ? b.slice(dy, offset, end, [axis]) : null;
    offset = end;
    return part;
  });
};
