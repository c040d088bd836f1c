import { expandReduced } from './common.js';
import type { GradientContext, GradientRule } from './types.js';

export function reduceExtremum(ctx: GradientContext): string {
  const { b } = ctx;
  const x = ctx.input(0);
  const hit = b.op('Equal', [x, expandReduced(ctx, ctx.output(0))]);
  return b.op('Where', [hit, expandReduced(ctx, ctx.dyOrZeros(0)), b.scalarLike(0, x)]);
}

/** y = max x over axes: dy goes to the maximal elements (every tied element gets all of it). */
export const ReduceMax: GradientRule = (ctx) => [reduceExtremum(ctx)];
