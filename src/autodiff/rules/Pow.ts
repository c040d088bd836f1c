import type { GradientRule } from './types.js';

/**
 * y = a^e: da = dy · e · a^(e−1), de = dy · y · ln a. The exponent may have another type (opset 12+, e.g. an
 * int64 2 from `x ** 2`); it is cast to a's type for the derivative.
 */
export const Pow: GradientRule = (ctx) => {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  const [a, e] = [ctx.input(0), ctx.input(1)];
  const out: (string | null)[] = [null, null];
  if (ctx.needs[0]) {
    const ef = b.cast(e, b.typeOf(a));
    const k = ctx.graph.constValue(e);
    let local: string;
    if (k && k.values.length === 1 && k.values[0] === 2) local = b.scale(a, 2);
    else if (k && k.values.length === 1 && k.values[0] === 1) local = b.onesLike(a);
    else local = b.mul(ef, b.op('Pow', [a, b.sub(ef, b.scalarLike(1, a))]));
    out[0] = b.reduceToShape(b.mul(dy, local), a);
  }
  if (ctx.needs[1]) out[1] = b.reduceToShape(b.mul(b.mul(dy, ctx.output(0)), b.op('Log', [a])), e);
  return out;
};
