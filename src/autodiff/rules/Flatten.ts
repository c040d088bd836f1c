import type { GradientRule } from './types.js';

/** Flatten only rearranges the shape: dx = dy reshaped to x's shape. */
export const Flatten: GradientRule = (ctx) => [ctx.b.reshapeLike(ctx.dyOrZeros(0), ctx.input(0))];
