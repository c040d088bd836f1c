import { attrFloat } from '../attrs.js';
import type { GradientRule } from './types.js';

/** y = x (x > 0) or αx: dx = dy or α·dy. */
export const LeakyRelu: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const dy = ctx.dyOrZeros(0);
  const alpha = attrFloat(ctx.node, 'alpha', 0.01);
  return [b.op('Where', [b.op('Greater', [x, b.scalarLike(0, x)]), dy, b.scale(dy, alpha)])];
};
