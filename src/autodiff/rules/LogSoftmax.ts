import { softmaxAxes } from './Softmax.js';
import type { GradientRule } from './types.js';

/** y = log softmax(x): dx = dy − eʸ · Σ dy over the softmax axes. */
export const LogSoftmax: GradientRule = (ctx) => {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  const total = b.reduceSum(dy, softmaxAxes(ctx), true);
  return [b.sub(dy, b.mul(b.op('Exp', [ctx.output(0)]), total))];
};
