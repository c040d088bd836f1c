import type { GradientRule } from './types.js';

/** y = cos x: dx = −dy · sin x. */
export const Cos: GradientRule = (ctx) => [
  ctx.b.neg(ctx.b.mul(ctx.dyOrZeros(0), ctx.b.op('Sin', [ctx.input(0)]))),
];
