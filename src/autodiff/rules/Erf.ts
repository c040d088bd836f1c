import type { GradientRule } from './types.js';

/** y = erf x: dx = dy · 2/√π · e^(−x²). */
export const Erf: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const gauss = b.op('Exp', [b.neg(b.mul(x, x))]);
  return [b.mul(ctx.dyOrZeros(0), b.scale(gauss, 2 / Math.sqrt(Math.PI)))];
};
