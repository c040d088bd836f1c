import { isStatic } from '../infer.js';
import { expandReduced } from './common.js';
import type { GradientRule } from './types.js';

/** y = mean x over axes: dx = dy broadcast back, times |y| / |x| (static when sizes are, else from Size). */
export const ReduceMean: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const y = ctx.output(0);
  const dx = expandReduced(ctx, ctx.dyOrZeros(0));
  const xs = ctx.graph.shape(x);
  const ys = ctx.graph.shape(y);
  if (xs && ys && isStatic(xs) && isStatic(ys)) {
    const ratio = ys.reduce((a, c) => a * c, 1) / xs.reduce((a, c) => a * c, 1);
    return [b.scale(dx, ratio)];
  }
  const type = b.typeOf(x);
  const count = (t: string) => b.cast(b.op('Size', [t]), type);
  // Size is int64; dividing two casts keeps the ratio exact for realistic sizes.
  return [b.mul(dx, b.div(count(y), count(x)))];
};
