import type { GradientRule } from './types.js';

/** y = Σ xᵢ (variadic, broadcasting): dxᵢ = dy summed to xᵢ's shape. */
export const Sum: GradientRule = (ctx) => {
  const dy = ctx.dyOrZeros(0);
  return ctx.node.input.map((x, i) => (ctx.needs[i] ? ctx.b.reduceToShape(dy, x) : null));
};
