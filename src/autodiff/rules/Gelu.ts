import { attrString } from '../attrs.js';
import type { GradientRule } from './types.js';

/**
 * Gelu (opset 20). Exact: y = x·Φ(x), dx = dy · (Φ(x) + x·φ(x)). With approximate='tanh':
 * y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³), dx = dy · (½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)).
 */
export const Gelu: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const dy = ctx.dyOrZeros(0);
  const half = b.scalarLike(0.5, x);
  const one = b.scalarLike(1, x);
  const x2 = b.mul(x, x);
  if (attrString(ctx.node, 'approximate', 'none') === 'tanh') {
    const c = Math.sqrt(2 / Math.PI);
    const u = b.scale(b.add(x, b.scale(b.mul(x2, x), 0.044715)), c);
    const t = b.op('Tanh', [u]);
    const du = b.scale(b.add(one, b.scale(x2, 3 * 0.044715)), c);
    const local = b.add(
      b.mul(half, b.add(one, t)),
      b.mul(b.mul(half, x), b.mul(b.sub(one, b.mul(t, t)), du)),
    );
    return [b.mul(dy, local)];
  }
  const cdf = b.mul(half, b.add(one, b.op('Erf', [b.scale(x, Math.SQRT1_2)])));
  const pdf = b.scale(b.op('Exp', [b.scale(x2, -0.5)]), 1 / Math.sqrt(2 * Math.PI));
  return [b.mul(dy, b.add(cdf, b.mul(x, pdf)))];
};
