import type { GradientRule } from './types.js';

/** y = ln(1 + eˣ): dx = dy · σ(x). */
export const Softplus: GradientRule = (ctx) => [
  ctx.b.mul(ctx.dyOrZeros(0), ctx.b.op('Sigmoid', [ctx.input(0)])),
];
