import { attrInt, attrInts, attrString, getAttr } from '../attrs.js';
import { DataType } from '../onnx_io.js';
import { normAxis, range, requireRank } from './common.js';
import type { GradientContext, GradientRule } from './types.js';

/** How one axis is resized. `scale` is the factor ONNX Runtime uses for coordinates (out/in when sizes are given). */
interface AxisResize {
  axis: number;
  inDim: number | string | null;
  outDim: number | null;
  scale: number | null;
}

interface ResizeSettings {
  mode: 'nearest' | 'linear';
  coordinate: string;
  nearest: string;
  axes: AxisResize[];
  /** The `sizes` input when it is computed at runtime (e.g. Concat(Shape(x)[:2], 2·Shape(x)[2:])). */
  runtimeSizes?: string;
}

const f = Math.fround;

function settings(ctx: GradientContext, rank: number): ResizeSettings {
  const { node, graph } = ctx;
  const x = ctx.input(0);
  const xs = graph.shape(x);
  const modeAttr = attrString(node, 'mode', 'nearest').toLowerCase();
  let mode: 'nearest' | 'linear';
  if (modeAttr === 'nearest') mode = 'nearest';
  else if (modeAttr === 'linear' || modeAttr === 'bilinear') mode = 'linear';
  else throw ctx.error(`Resize mode '${modeAttr}' is not supported (nearest and linear are)`);
  const legacy = node.opType === 'Upsample' || ctx.opset < 11;
  const coordinate = legacy ? 'asymmetric' : attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearest = legacy ? 'simple' : attrString(node, 'nearest_mode', 'round_prefer_floor');
  if (coordinate === 'tf_crop_and_resize')
    throw ctx.error("coordinate_transformation_mode 'tf_crop_and_resize' is not supported");
  if (attrString(node, 'keep_aspect_ratio_policy', 'stretch') !== 'stretch')
    throw ctx.error('keep_aspect_ratio_policy other than stretch is not supported');

  let scales: number[] | undefined;
  let sizes: number[] | undefined;
  if (node.opType === 'Upsample' && getAttr(node, 'scales'))
    scales = getAttr(node, 'scales')!.floats.map(Number);
  else {
    const scalesName = legacy ? ctx.input(1) : ctx.input(2);
    const sizesName = legacy ? '' : ctx.input(3);
    const sv = scalesName ? graph.constValue(scalesName) : undefined;
    if (scalesName && !sv) throw ctx.error('Resize with runtime scales is not supported');
    if (sv && sv.values.length > 0) scales = sv.values.map(f);
    if (sizesName) {
      const zv = graph.constValue(sizesName);
      if (!zv) {
        if (attrInts(node, 'axes'))
          throw ctx.error('Resize with runtime sizes and an axes attribute is not supported');
        return { mode, coordinate, nearest, axes: [], runtimeSizes: sizesName };
      }
      sizes = zv.values;
    }
  }
  const axesList = (attrInts(node, 'axes') ?? range(0, rank)).map((a) => normAxis(a, rank));
  const axes: AxisResize[] = axesList.map((axis, k) => {
    const inDim = xs?.[axis] ?? null;
    if (sizes) {
      const out = sizes[k];
      return { axis, inDim, outDim: out, scale: typeof inDim === 'number' ? f(out / inDim) : null };
    }
    const scale = scales?.[k] ?? 1;
    return { axis, inDim, outDim: typeof inDim === 'number' ? Math.floor(f(inDim * scale)) : null, scale };
  });
  if (attrInt(node, 'antialias', 0) === 1 && axes.some((a) => a.scale !== null && a.scale < 1)) {
    throw ctx.error('antialiased downsampling is not supported');
  }
  return {
    mode,
    coordinate,
    nearest,
    axes: axes.filter((a) => !(a.scale === 1 && (a.outDim === null || a.outDim === a.inDim))),
  };
}

/** ONNX Runtime's output → input coordinate transform (float32 arithmetic, as in upsamplebase.h). */
function originalCoordinate(mode: string, o: number, scale: number, outLen: number, inLen: number): number {
  switch (mode) {
    case 'half_pixel':
      return f(f(f(o + 0.5) / scale) - 0.5);
    case 'asymmetric':
      return f(o / scale);
    case 'pytorch_half_pixel':
      return outLen > 1 ? f(f(f(o + 0.5) / scale) - 0.5) : 0;
    case 'tf_half_pixel_for_nn':
      return f(f(o + 0.5) / scale);
    case 'align_corners':
      return outLen === 1 ? 0 : f(f(o * (inLen - 1)) / (outLen - 1));
    case 'half_pixel_symmetric': {
      const adjustment = f(outLen / f(scale * inLen));
      const center = f(inLen / 2);
      const offset = f(center * f(1 - adjustment));
      return f(offset + f(f(f(o + 0.5) / scale) - 0.5));
    }
    default:
      throw new Error(`coordinate_transformation_mode '${mode}' is not supported`);
  }
}

function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

function nearestIndex(mode: string, x: number, downsampling: boolean, inLen: number): number {
  let i: number;
  switch (mode) {
    case 'round_prefer_floor':
      i = x === Math.trunc(x) + 0.5 ? Math.floor(x) : roundHalfAway(x);
      break;
    case 'round_prefer_ceil':
      i = roundHalfAway(x);
      break;
    case 'floor':
      i = Math.floor(x);
      break;
    case 'ceil':
      i = Math.ceil(x);
      break;
    case 'simple':
      i = downsampling ? Math.ceil(x) : Math.trunc(x);
      break;
    default:
      throw new Error(`nearest_mode '${mode}' is not supported`);
  }
  return Math.min(Math.max(i, 0), inLen - 1);
}

/** The [out, in] matrix M with y = M·x along one axis. */
export function resizeMatrix(
  s: Pick<ResizeSettings, 'mode' | 'coordinate' | 'nearest'>,
  inLen: number,
  outLen: number,
  scale: number,
): Float64Array {
  const m = new Float64Array(outLen * inLen);
  for (let o = 0; o < outLen; o++) {
    const x = originalCoordinate(s.coordinate, o, scale, outLen, inLen);
    if (s.mode === 'nearest') {
      m[o * inLen + nearestIndex(s.nearest, x, scale < 1, inLen)] = 1;
      continue;
    }
    const c = Math.max(0, Math.min(x, inLen - 1));
    const x1 = Math.min(Math.trunc(c), inLen - 1);
    const x2 = Math.min(x1 + 1, inLen - 1);
    let d1 = Math.abs(f(c - x1));
    let d2 = Math.abs(f(c - x2));
    if (x1 === x2) d1 = d2 = 0.5;
    m[o * inLen + x1] += d2;
    m[o * inLen + x2] += d1;
  }
  return m;
}

/** Whether nearest resizing by an integer factor maps output o to input ⌊o/s⌋ for any input size. */
function isBlockMapping(s: ResizeSettings, factor: number): boolean {
  for (let inLen = 1; inLen <= 16; inLen++) {
    const outLen = inLen * factor;
    for (let o = 0; o < outLen; o++) {
      const x = originalCoordinate(s.coordinate, o, factor, outLen, inLen);
      if (nearestIndex(s.nearest, x, false, inLen) !== Math.floor(o / factor)) return false;
    }
  }
  return true;
}

/**
 * Resize/Upsample, nearest or linear.
 *  - Nearest by integer factors whose index map is a block map (⌊o/s⌋: PyTorch's nearest exports, half_pixel
 *    with round_prefer_floor …): dy is reshaped to [d₀, s₀, d₁, s₁, …] and summed over the s axes. This works
 *    for runtime sizes (SD's upsamplers).
 *  - Otherwise (linear, fractional factors, align_corners): each resized axis is the matrix M [out, in] of
 *    ONNX Runtime's interpolation, built here, and dx = Mᵀ applied along that axis (MatMul). Needs static sizes.
 * Cubic mode, tf_crop_and_resize and antialiased downsampling are refused.
 */
export const Resize: GradientRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.input(0);
  const rank = requireRank(ctx, x);
  const s = settings(ctx, rank);
  const dy = ctx.dyOrZeros(0);
  const out: (string | null)[] = ctx.node.input.map(() => null);
  if (s.runtimeSizes) {
    // Only nearest resizing by whole factors can be undone without knowing the sizes: the factors are taken at
    // runtime as sizes / shape, and a size that is not a multiple of the input's makes the Reshape fail.
    const blockModes = s.mode === 'nearest' && [1, 2, 3, 4].every((k) => isBlockMapping(s, k));
    if (!blockModes) {
      throw ctx.error(
        `Resize with runtime sizes is supported only for nearest modes that map output o to input ⌊o/s⌋ ` +
          `(got mode '${s.mode}', '${s.coordinate}', '${s.nearest}')`,
      );
    }
    const shape = b.shapeOf(x);
    const factors = b.op('Div', [b.cast(s.runtimeSizes, DataType.INT64), shape]);
    const pairs = b.concat([b.unsqueeze(shape, [1]), b.unsqueeze(factors, [1])], 1);
    out[0] = b.reduceSum(
      b.reshape(dy, b.reshape(pairs, [-1])),
      range(0, rank).map((i) => 2 * i + 1),
      false,
    );
    return out;
  }
  if (s.axes.length === 0) {
    out[0] = dy;
    return out;
  }
  const factors = s.axes.map((a) =>
    a.scale !== null && Number.isInteger(a.scale) && a.scale >= 1 ? a.scale : null,
  );
  if (
    s.mode === 'nearest' &&
    factors.every((k) => k !== null) &&
    factors.every((k) => isBlockMapping(s, k!))
  ) {
    const perAxis = range(0, rank).map((i) => s.axes.find((a) => a.axis === i)?.scale ?? 1);
    const xs = ctx.graph.shape(x);
    let target: string;
    if (xs && xs.every((d) => typeof d === 'number'))
      target = b.int64s(xs.flatMap((d, i) => [d as number, perAxis[i]]));
    else {
      const pairs = b.concat(
        [b.unsqueeze(b.shapeOf(x), [1]), b.constant(DataType.INT64, [rank, 1], perAxis, 'factors')],
        1,
      );
      target = b.reshape(pairs, [-1]);
    }
    out[0] = b.reduceSum(
      b.reshape(dy, target),
      range(0, rank).map((i) => 2 * i + 1),
      false,
    );
    return out;
  }
  let g = dy;
  const type = b.typeOf(x);
  for (const a of s.axes) {
    if (typeof a.inDim !== 'number' || a.outDim === null || a.scale === null) {
      throw ctx.error(`resizing axis ${a.axis} needs static sizes for its gradient (use inputShapes)`);
    }
    const m = resizeMatrix(s, a.inDim, a.outDim, a.scale);
    if (a.axis === rank - 1) {
      g = b.op('MatMul', [g, b.constant(type, [a.outDim, a.inDim], m, 'resize_matrix')]);
    } else {
      const mt = new Float64Array(m.length);
      for (let o = 0; o < a.outDim; o++)
        for (let i = 0; i < a.inDim; i++) mt[i * a.outDim + o] = m[o * a.inDim + i];
      const matrix = b.constant(type, [a.inDim, a.outDim], mt, 'resize_matrix_t');
      if (a.axis === rank - 2) g = b.op('MatMul', [matrix, g]);
      else {
        const perm = range(0, rank);
        perm[a.axis] = rank - 2;
        perm[rank - 2] = a.axis;
        g = b.transpose(b.op('MatMul', [matrix, b.transpose(g, perm)]), perm);
      }
    }
  }
  out[0] = g;
  return out;
};
