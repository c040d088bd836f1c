import type { GradientRule } from './types.js';

/** y = a / b: da = dy / b, db = −dy · y / b (reusing the forward output instead of a / b²). */
export const Div: GradientRule = (ctx) => {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  const [x0, x1] = [ctx.input(0), ctx.input(1)];
  return [
    ctx.needs[0] ? b.reduceToShape(b.div(dy, x1), x0) : null,
    ctx.needs[1] ? b.neg(b.reduceToShape(b.div(b.mul(dy, ctx.output(0)), x1), x1)) : null,
  ];
};
