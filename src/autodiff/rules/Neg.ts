import type { GradientRule } from './types.js';

/** y = −x: dx = −dy. */
export const Neg: GradientRule = (ctx) => [ctx.b.neg(ctx.dyOrZeros(0))];
