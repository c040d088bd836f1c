import type { GradientRule } from './types.js';

/** y = cond ? a : b: da = dy where cond, db = dy elsewhere (each summed to its operand's shape). */
export const Where: GradientRule = (ctx) => {
  const { b } = ctx;
  const [cond, x, y] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  const dy = ctx.dyOrZeros(0);
  const zero = b.scalarLike(0, dy);
  return [
    null,
    ctx.needs[1] ? b.reduceToShape(b.op('Where', [cond, dy, zero]), x) : null,
    ctx.needs[2] ? b.reduceToShape(b.op('Where', [cond, zero, dy]), y) : null,
  ];
};
