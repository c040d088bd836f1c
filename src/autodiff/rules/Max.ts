import type { GradientRule } from './types.js';
import { minMaxRule } from './Min.js';

/** y = max(x₀, x₁, …): the gradient goes to the inputs equal to y (every tied input gets all of it). */
export const Max: GradientRule = (ctx) => minMaxRule(ctx);
