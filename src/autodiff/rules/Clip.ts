import { attrFloat } from '../attrs.js';
import type { GradientRule } from './types.js';

/** y = clamp(x, min, max): dx = dy where min ≤ x ≤ max (PyTorch's convention at the bounds). */
export const Clip: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.input(0);
  const dy = ctx.dyOrZeros(0);
  let lo: string | undefined;
  let hi: string | undefined;
  if (ctx.opset < 11) {
    const min = attrFloat(node, 'min');
    const max = attrFloat(node, 'max');
    if (min !== undefined) lo = b.scalarLike(min, x);
    if (max !== undefined) hi = b.scalarLike(max, x);
  } else {
    lo = ctx.input(1) || undefined;
    hi = ctx.input(2) || undefined;
  }
  let inside: string | undefined;
  if (lo) inside = b.op('Not', [b.op('Less', [x, lo])]);
  if (hi) {
    const below = b.op('Not', [b.op('Greater', [x, hi])]);
    inside = inside ? b.op('And', [inside, below]) : below;
  }
  return [inside ? b.op('Where', [inside, dy, b.scalarLike(0, x)]) : dy];
};
