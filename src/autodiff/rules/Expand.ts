import type { GradientRule } from './types.js';

/** y = broadcast x to a shape: dx = dy summed over the broadcast axes. */
export const Expand: GradientRule = (ctx) => [
  ctx.needs[0] ? ctx.b.reduceToShape(ctx.dyOrZeros(0), ctx.input(0)) : null,
];
