import type { GradientRule } from './types.js';

/** y = x: dx = dy. */
export const Identity: GradientRule = (ctx) => [ctx.dyOrZeros(0)];
