import { attrInt } from '../attrs.js';
import { normAxis, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/** yᵢ = the pieces of x along an axis: dx = concat(dyᵢ), with zeros for pieces that get no gradient. */
export const Split: GradientRule = (ctx) => {
  const rank = requireRank(ctx, ctx.input(0));
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), rank);
  const parts = ctx.node.output.map((_, i) => ctx.dyOrZeros(i));
  return [ctx.b.concat(parts, axis)];
};
