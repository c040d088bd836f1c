import type { GradientRule } from './types.js';

/** y = a · b: da = dy · b, db = dy · a. */
export const Mul: GradientRule = (ctx) => {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  const [x0, x1] = [ctx.input(0), ctx.input(1)];
  return [
    ctx.needs[0] ? b.reduceToShape(b.mul(dy, x1), x0) : null,
    ctx.needs[1] ? b.reduceToShape(b.mul(dy, x0), x1) : null,
  ];
};
