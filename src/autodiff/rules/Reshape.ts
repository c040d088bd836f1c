import type { GradientRule } from './types.js';

/** Reshape only rearranges the shape: dx = dy reshaped to x's shape. */
export const Reshape: GradientRule = (ctx) => [ctx.b.reshapeLike(ctx.dyOrZeros(0), ctx.input(0))];
