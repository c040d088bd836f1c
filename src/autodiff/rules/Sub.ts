import type { GradientRule } from './types.js';

/** y = a − b: da = dy, db = −dy (each summed over broadcast axes). */
export const Sub: GradientRule = (ctx) => {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  return [
    ctx.needs[0] ? b.reduceToShape(dy, ctx.input(0)) : null,
    // Negate after reducing: the reduced tensor is never larger.
    ctx.needs[1] ? b.neg(b.reduceToShape(dy, ctx.input(1))) : null,
  ];
};
