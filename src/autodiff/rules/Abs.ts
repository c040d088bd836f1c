import type { GradientRule } from './types.js';

/** y = |x|: dx = dy · sign(x) (0 at x = 0). */
export const Abs: GradientRule = (ctx) => [ctx.b.mul(ctx.dyOrZeros(0), ctx.b.op('Sign', [ctx.input(0)]))];
