import type { GradientRule } from './types.js';

/** y = ln x: dx = dy / x. */
export const Log: GradientRule = (ctx) => [ctx.b.div(ctx.dyOrZeros(0), ctx.input(0))];
