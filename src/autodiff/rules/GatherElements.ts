import { attrInt } from '../attrs.js';
import { DataType } from '../onnx_io.js';
import { normAxis, range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y[…, k, …] = data[…, idx[…, k, …], …] along `axis` (CLIP's pooled output at the EOS position):
 * d data = scatter-add of dy at the indices. Opset 16+ has ScatterElements with reduction='add'; before, a
 * one-hot over the axis (Equal with a Range) multiplies dy and is summed, then zero-padded up to data's shape
 * where indices cover fewer positions on the other axes.
 */
export const GatherElements: GradientRule = (ctx) => {
  const { b } = ctx;
  const [data, indices] = [ctx.input(0), ctx.input(1)];
  const rank = requireRank(ctx, data);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), rank);
  const dy = ctx.dyOrZeros(0);
  const depth = b.dim(data, axis);
  const idx = b.cast(indices, DataType.INT64);
  const wrapped = b.op('Where', [b.op('Less', [idx, b.int64Scalar(0)]), b.add(idx, depth), idx]);
  if (ctx.opset >= 16) {
    return [b.op('ScatterElements', [b.zerosLike(data), wrapped, dy], { axis, reduction: 'add' }), null];
  }
  const positions = b.op('Range', [b.int64Scalar(0), b.reshape(depth, b.int64s([])), b.int64Scalar(1)]);
  const shape = range(0, rank + 1).map((i) => (i === axis + 1 ? -1 : 1));
  const hit = b.op('Equal', [b.unsqueeze(wrapped, [axis + 1]), b.reshape(positions, shape)]);
  const spread = b.mul(b.unsqueeze(dy, [axis + 1]), b.cast(hit, b.typeOf(data)));
  const summed = b.reduceSum(spread, [axis], false);
  const missing = b.sub(b.shapeOf(data), b.shapeOf(summed));
  return [b.pad(summed, b.concat([b.int64s(new Array(rank).fill(0)), missing], 0)), null];
};
