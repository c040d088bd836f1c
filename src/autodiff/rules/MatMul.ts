import { range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

function swapLast(rank: number): number[] {
  return [...range(0, rank - 2), rank - 1, rank - 2];
}

/**
 * y = a @ b with numpy semantics (batch broadcasting; a 1-D a is a row, a 1-D b a column, their unit dim dropped
 * from y): da = dy @ bᵀ, db = aᵀ @ dy, summed over broadcast batch dims.
 */
export const MatMul: GradientRule = (ctx) => {
  const { b } = ctx;
  const [a, w] = [ctx.input(0), ctx.input(1)];
  const ra = requireRank(ctx, a);
  const rb = requireRank(ctx, w);
  let dy = ctx.dyOrZeros(0);
  const a2 = ra === 1 ? b.unsqueeze(a, [0]) : a;
  const b2 = rb === 1 ? b.unsqueeze(w, [1]) : w;
  const ry = Math.max(ra, rb, 2) - (ra === 1 ? 1 : 0) - (rb === 1 ? 1 : 0);
  if (ra === 1 && rb === 1) dy = b.reshape(dy, [1, 1]);
  else if (ra === 1) dy = b.unsqueeze(dy, [ry - 1]);
  else if (rb === 1) dy = b.unsqueeze(dy, [ry]);
  const ra2 = Math.max(ra, 2);
  const rb2 = Math.max(rb, 2);
  const out: (string | null)[] = [null, null];
  if (ctx.needs[0] && rb === 2 && ra >= 2 && ctx.graph.isInitializer(w)) {
    // A weight: da = (w @ dyᵀ)ᵀ. The textbook dy @ wᵀ would make ONNX Runtime fold wᵀ into a second copy of the
    // weight (and pre-pack it: a third), which at SD-1.5 size is gigabytes; w as the left operand is read in place.
    const dyT = b.transpose(dy, swapLast(ra));
    out[0] = b.reduceToShape(b.transpose(b.op('MatMul', [w, dyT]), swapLast(ra)), a);
  } else if (ctx.needs[0]) {
    const da = b.op('MatMul', [dy, b.transpose(b2, swapLast(rb2))]);
    if (ra === 1) {
      const rda = ctx.graph.rank(da) ?? Math.max(ra2, rb2);
      out[0] = b.reduceSum(da, range(0, rda - 1), false);
    } else out[0] = b.reduceToShape(da, a);
  }
  if (ctx.needs[1]) {
    const db = b.op('MatMul', [b.transpose(a2, swapLast(ra2)), dy]);
    if (rb === 1) {
      const rdb = ctx.graph.rank(db) ?? Math.max(ra2, rb2);
      out[1] = b.reduceSum(db, [...range(0, rdb - 2), rdb - 1], false);
    } else out[1] = b.reduceToShape(db, w);
  }
  return out;
};
