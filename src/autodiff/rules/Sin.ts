import type { GradientRule } from './types.js';

/** y = sin x: dx = dy · cos x. */
export const Sin: GradientRule = (ctx) => [ctx.b.mul(ctx.dyOrZeros(0), ctx.b.op('Cos', [ctx.input(0)]))];
