import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = Σ x over axes: dx = dy broadcast back (reduced axes re-inserted when keepdims=0). */
export const ReduceSum: GradientRule = (ctx) => [expandReduced(ctx, ctx.dyOrZeros(0))];
