import type { GradientRule } from './types.js';

/** y = x (x > 0) or slope · x: dx = dy or slope · dy; dslope = dy · x where x ≤ 0 (summed to slope's shape). */
export const PRelu: GradientRule = (ctx) => {
  const { b } = ctx;
  const [x, slope] = [ctx.input(0), ctx.input(1)];
  const dy = ctx.dyOrZeros(0);
  const zero = b.scalarLike(0, x);
  const positive = b.op('Greater', [x, zero]);
  return [
    ctx.needs[0] ? b.op('Where', [positive, dy, b.mul(dy, slope)]) : null,
    ctx.needs[1] ? b.reduceToShape(b.op('Where', [positive, zero, b.mul(dy, x)]), slope) : null,
  ];
};
