import type { GradientRule } from './types.js';

/** y = eˣ: dx = dy · y. */
export const Exp: GradientRule = (ctx) => [ctx.b.mul(ctx.dyOrZeros(0), ctx.output(0))];
