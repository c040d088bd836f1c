import { attrInt } from '../attrs.js';
import { DataType } from '../onnx_io.js';
import { normAxis, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y = gather(data, indices, axis): d data = scatter-add of dy at the indices. Indices may repeat (embedding
 * lookups), and ScatterND's reduction needs opset 16, so the sum is a MatMul with a one-hot matrix built with
 * Equal/Range (exact, any float type, any opset ≥ 11):
 *   dy → [P, K, Q] (P = dims before axis, K = number of indices, Q = dims after), onehot [K, D],
 *   d data = onehotᵀ @ dy → [P, D, Q] → data's shape.
 */
export const Gather: GradientRule = (ctx) => {
  const { b } = ctx;
  const [data, indices] = [ctx.input(0), ctx.input(1)];
  const rank = requireRank(ctx, data);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), rank);
  const ds = ctx.graph.shape(data);
  const depth = b.dim(data, axis);
  const flat = b.reshape(b.cast(indices, DataType.INT64), [-1]);
  const wrapped = b.op('Where', [b.op('Less', [flat, b.int64Scalar(0)]), b.add(flat, depth), flat]);
  const positions = b.op('Range', [b.int64Scalar(0), b.reshape(depth, b.int64s([])), b.int64Scalar(1)]);
  const onehot = b.cast(b.op('Equal', [b.unsqueeze(wrapped, [1]), positions]), b.typeOf(data));
  let before: string;
  const lead = ds?.slice(0, axis);
  if (axis === 0) before = b.int64s([1]);
  else if (lead && lead.every((d) => typeof d === 'number'))
    before = b.int64s([(lead as number[]).reduce((a, c) => a * c, 1)]);
  else before = b.reduce('ReduceProd', b.shapeOf(data, 0, axis), undefined, true);
  const count = b.reshape(b.op('Size', [indices]), [1]);
  const dy3 = b.reshape(ctx.dyOrZeros(0), b.concat([before, count, b.int64s([-1])], 0));
  const scattered = b.op('MatMul', [b.transpose(onehot, [1, 0]), dy3]);
  return [b.reshapeLike(scattered, data), null];
};
