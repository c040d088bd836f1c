import type { GradientRule } from './types.js';

/** y = a + b (broadcasting): da = Σ_broadcast dy, db likewise. */
export const Add: GradientRule = (ctx) => {
  const dy = ctx.dyOrZeros(0);
  return [0, 1].map((i) => (ctx.needs[i] ? ctx.b.reduceToShape(dy, ctx.input(i)) : null));
};
