import { reduceExtremum } from './ReduceMax.js';
import type { GradientRule } from './types.js';

/** y = min x over axes: dy goes to the minimal elements (every tied element gets all of it). */
export const ReduceMin: GradientRule = (ctx) => [reduceExtremum(ctx)];
