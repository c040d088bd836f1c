import type { GradientRule } from './types.js';

/** Squeeze only rearranges the shape: dx = dy reshaped to x's shape. */
export const Squeeze: GradientRule = (ctx) => [ctx.b.reshapeLike(ctx.dyOrZeros(0), ctx.input(0))];
