import { attrInts } from '../attrs.js';
import { range, requireRank } from './common.js';
import { convGeometry } from './conv_common.js';
import type { GradientRule } from './types.js';

/**
 * y = convT(x, w) + b with explicit pads (output_shape and auto_pad are refused: their padding split differs
 * between ONNX versions). dx is the forward Conv of dy by w (the adjoint), dw a Conv of dyᵀ by xᵀ (stride ↔
 * dilation) cropped to the kernel (group 1 only), db a sum.
 */
export const ConvTranspose: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  if (attrInts(node, 'output_shape'))
    throw ctx.error('ConvTranspose with output_shape is not supported; use explicit pads');
  const rank = requireRank(ctx, x);
  const { spatial, kernel, strides, dilations, pads, group } = convGeometry(ctx, rank);
  const dy = ctx.dyOrZeros(0);
  const out: (string | null)[] = [null, null, null];
  if (ctx.needs[0]) out[0] = b.op('Conv', [dy, w], { strides, dilations, pads, group });
  if (ctx.needs[1]) {
    if (group !== 1) throw ctx.error('the weight gradient of a grouped ConvTranspose is not supported');
    const swap = [1, 0, ...range(2, rank)];
    let dw = b.op('Conv', [b.transpose(dy, swap), b.transpose(x, swap)], {
      strides: dilations,
      dilations: strides,
      pads,
    });
    const full = ctx.graph.shape(dw);
    const exact = full && kernel.every((k, i) => typeof k === 'number' && full[2 + i] === k);
    if (!exact) {
      const ends = kernel.every((k) => typeof k === 'number')
        ? b.int64s(kernel as number[])
        : b.shapeOf(w, 2);
      dw = b.slice(dw, b.int64s(new Array(spatial).fill(0)), ends, b.int64s(range(2, rank)));
    }
    out[1] = b.transpose(dw, swap);
  }
  if (bias && ctx.needs[2]) out[2] = b.reduceSum(dy, [0, ...range(2, rank)], false);
  return out;
};
