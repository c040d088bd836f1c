import { attrInts } from '../attrs.js';
import { clampSlice } from '../infer.js';
import { DataType } from '../onnx_io.js';
import { normAxis, range, requireRank } from './common.js';
import type { GradientContext, GradientRule } from './types.js';

interface SliceSpec {
  starts: number[] | string;
  ends: number[] | string;
  /** Normalized (non-negative) axes. */
  axes: number[];
  steps: number[];
}

function sliceSpec(ctx: GradientContext, rank: number): SliceSpec {
  const { graph, node } = ctx;
  if (ctx.opset < 10) {
    const starts = attrInts(node, 'starts', []);
    const axes = (attrInts(node, 'axes') ?? range(0, starts.length)).map((a) => normAxis(a, rank));
    return { starts, ends: attrInts(node, 'ends', []), axes, steps: axes.map(() => 1) };
  }
  const value = (i: number): number[] | string => {
    const name = ctx.input(i);
    const v = graph.constValue(name);
    return v ? v.values : name;
  };
  const starts = value(1);
  const ends = value(2);
  let axes: number[];
  if (ctx.input(3)) {
    const v = graph.constValue(ctx.input(3));
    if (!v) throw ctx.error('Slice with runtime axes is not supported');
    axes = v.values.map((a) => normAxis(a, rank));
  } else {
    const n = Array.isArray(starts) ? starts.length : graph.shape(ctx.input(1))?.[0];
    if (typeof n !== 'number') throw ctx.error('cannot tell how many axes the Slice covers');
    axes = range(0, n);
  }
  let steps = axes.map(() => 1);
  if (ctx.input(4)) {
    const v = graph.constValue(ctx.input(4));
    if (!v) throw ctx.error('Slice with runtime steps is not supported');
    steps = v.values;
  }
  return { starts, ends, axes, steps };
}

/**
 * y = x[starts:ends:steps] on some axes: dx is dy placed back into zeros. For unit steps that is one Pad, with
 * pads computed statically or, for runtime bounds (SD's GEGLU chunking slices at Shape/2), in the graph with
 * ONNX's clamping rules. Other steps use ScatterElements per axis and need static sizes on those axes.
 */
export const Slice: GradientRule = (ctx) => {
  const { b, graph } = ctx;
  const x = ctx.input(0);
  const rank = requireRank(ctx, x);
  const spec = sliceSpec(ctx, rank);
  const xs = graph.shape(x);
  const dy = ctx.dyOrZeros(0);
  const staticBounds = Array.isArray(spec.starts) && Array.isArray(spec.ends);
  const dims = spec.axes.map((a) => xs?.[a]);
  const staticDims = dims.every((d) => typeof d === 'number');

  if (staticBounds && staticDims) {
    const starts = spec.starts as number[];
    const ends = spec.ends as number[];
    const pads = new Array(2 * rank).fill(0);
    const strided: { axis: number; indices: number[]; dim: number }[] = [];
    spec.axes.forEach((axis, k) => {
      const dim = dims[k] as number;
      const step = spec.steps[k];
      const [s, e] = clampSlice(starts[k], ends[k], step, dim);
      if (step === 1) {
        const len = Math.max(0, e - s);
        pads[axis] = s;
        pads[axis + rank] = dim - s - len;
      } else {
        const n = Math.max(0, Math.ceil((e - s) / step));
        strided.push({ axis, indices: range(0, n).map((i) => s + i * step), dim });
      }
    });
    let g = b.pad(dy, pads);
    for (const { axis, indices, dim } of strided) g = scatterAxis(ctx, g, axis, indices, dim, rank);
    return [g];
  }

  if (spec.steps.some((s) => s !== 1)) throw ctx.error('Slice with steps ≠ 1 needs static bounds and sizes');
  // Runtime bounds: clamp like ONNX (negative → + dim, then into [0, dim]) and pad back.
  const int64 = (v: number[] | string) => (typeof v === 'string' ? b.cast(v, DataType.INT64) : b.int64s(v));
  const dimsT = b.op('Gather', [b.shapeOf(x), b.int64s(spec.axes)], { axis: 0 });
  const zero = b.int64s([0]);
  const clamp = (v: string): string => {
    const wrapped = b.op('Where', [b.op('Less', [v, zero]), b.add(v, dimsT), v]);
    const low = b.op('Where', [b.op('Less', [wrapped, zero]), zero, wrapped]);
    return b.op('Where', [b.op('Greater', [low, dimsT]), dimsT, low]);
  };
  const s = clamp(int64(spec.starts));
  const e0 = clamp(int64(spec.ends));
  const e = b.op('Where', [b.op('Less', [e0, s]), s, e0]);
  const begin = s;
  const end = b.sub(dimsT, e);
  const positions = b.int64s([...spec.axes, ...spec.axes.map((a) => a + rank)]);
  const pads = b.op(
    'ScatterElements',
    [b.int64s(new Array(2 * rank).fill(0)), positions, b.concat([begin, end], 0)],
    { axis: 0 },
  );
  return [b.pad(dy, pads)];
};

/** Place g (with `indices.length` entries on `axis`) at `indices` of a zero tensor with `dim` entries there. */
function scatterAxis(
  ctx: GradientContext,
  g: string,
  axis: number,
  indices: number[],
  dim: number,
  rank: number,
): string {
  const { b } = ctx;
  const shape = b.shapeOf(g);
  const target = b.op('ScatterElements', [shape, b.int64s([axis]), b.int64s([dim])], { axis: 0 });
  const zeros = b.constantOfShape(target, b.typeOf(g), 0);
  const idxShape = range(0, rank).map((i) => (i === axis ? indices.length : 1));
  const idx = b.op('Expand', [b.constant(DataType.INT64, idxShape, indices, 'indices'), shape]);
  return b.op('ScatterElements', [zeros, idx, g], { axis });
}
