import { attrInts, attrString } from '../attrs.js';
import { DataType } from '../onnx_io.js';
import { normAxis, range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y = pad(x) in constant mode: dx = the un-padded window of dy, a Slice from the begin pads to begin + x's
 * shape (pads static or runtime; negative pads, i.e. crops, are not supported). Reflect/edge modes are refused.
 */
export const Pad: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const mode = attrString(node, 'mode', 'constant');
  if (mode !== 'constant') throw ctx.error(`Pad mode '${mode}' is not supported (only constant)`);
  const x = ctx.input(0);
  const rank = requireRank(ctx, x);
  let axes = range(0, rank);
  if (ctx.opset >= 18 && ctx.input(3)) {
    const v = ctx.graph.constValue(ctx.input(3));
    if (!v) throw ctx.error('Pad with runtime axes is not supported');
    axes = v.values.map((a) => normAxis(a, rank));
  }
  const dy = ctx.dyOrZeros(0);
  const padsValue = ctx.opset < 11 ? attrInts(node, 'pads') : ctx.graph.constValue(ctx.input(1))?.values;
  if (padsValue) {
    if (padsValue.some((p) => p < 0)) throw ctx.error('Pad with negative pads is not supported');
    const begin = padsValue.slice(0, axes.length);
    const xs = ctx.graph.shape(x);
    const dims = axes.map((a) => xs?.[a]);
    if (dims.every((d) => typeof d === 'number')) {
      return [
        b.slice(
          dy,
          begin,
          begin.map((p, k) => p + (dims[k] as number)),
          axes,
        ),
        null,
        null,
        null,
      ];
    }
    const begins = b.int64s(begin);
    const sizes = b.op('Gather', [b.shapeOf(x), b.int64s(axes)], { axis: 0 });
    return [b.slice(dy, begins, b.add(begins, sizes), axes), null, null, null];
  }
  const pads = b.cast(ctx.input(1), DataType.INT64);
  const begins = b.slice(pads, [0], [axes.length], [0]);
  const sizes = b.op('Gather', [b.shapeOf(x), b.int64s(axes)], { axis: 0 });
  return [b.slice(dy, begins, b.add(begins, sizes), axes), null, null, null];
};
