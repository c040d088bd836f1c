import type { GradientRule } from './types.js';

/** y = (Σ xᵢ) / n: dxᵢ = dy / n summed to xᵢ's shape. */
export const Mean: GradientRule = (ctx) => {
  const n = ctx.node.input.length;
  const dy = ctx.b.scale(ctx.dyOrZeros(0), 1 / n);
  return ctx.node.input.map((x, i) => (ctx.needs[i] ? ctx.b.reduceToShape(dy, x) : null));
};
