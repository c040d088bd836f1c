/**
 * Light type, shape and constant inference for the graph IR.
 *
 * The gradient rules need element types (to make constants of the right dtype) and, where available, static
 * shapes (to reduce broadcast gradients with plain ReduceSum instead of a Shape/Equal/NonZero chain). ONNX's
 * own shape inference is not available from TypeScript, so this covers the operators EditKit differentiates
 * and the integer "shape arithmetic" exports use around Reshape (Shape → Gather → Concat …). Anything it cannot
 * work out is reported as unknown, never guessed: rules then fall back to dynamic forms.
 *
 * Dims are numbers (static), strings (symbolic, from `dim_param`; equal strings are equal sizes) or null.
 */
import { attrFloat, attrInt, attrInts, attrString, attrTensor, getAttr } from './attrs.js';
import { DataType, tensorDims, tensorToNumbers, toNumber, type NodeProto } from './onnx_io.js';

export type Dim = number | string | null;
/** A tensor's shape; null when even the rank is unknown. */
export type Shape = Dim[] | null;

export interface ConstValue {
  type: DataType;
  dims: number[];
  values: number[];
}

export interface TensorInfo {
  type?: DataType;
  shape: Shape;
  /** The value, when it is a small compile-time constant. */
  value?: ConstValue;
  /** For 1-D integer tensors that hold shapes: each element as a static or symbolic dim. */
  symbolic?: Dim[];
}

export interface InferContext {
  opset: number;
  /** Info for an input name; '' (an omitted optional input) gives an empty info. */
  info(name: string): TensorInfo;
}

/** Constants above this many elements are not tracked (they are weights, not shape arithmetic). */
export const MAX_CONST_ELEMENTS = 4096;

const UNKNOWN: TensorInfo = { shape: null };

export function isStatic(shape: Shape): shape is number[] {
  return shape !== null && shape.every((d) => typeof d === 'number');
}

export function shapeToString(shape: Shape): string {
  return shape === null ? '[?]' : `[${shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

export function sameDim(a: Dim, b: Dim): boolean {
  return a !== null && a === b;
}

export function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === 1) return b;
  if (b === 1) return a;
  if (a !== null && a === b) return a;
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return null;
}

export function broadcastShapes(shapes: readonly Shape[]): Shape {
  if (shapes.some((s) => s === null)) return null;
  const list = shapes as Dim[][];
  const rank = Math.max(0, ...list.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of list) {
      const j = i - (rank - s.length);
      if (j >= 0) d = broadcastDim(d, s[j]);
    }
    out.push(d);
  }
  return out;
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function product(dims: readonly Dim[]): Dim {
  let p = 1;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

function constOf(info: TensorInfo): number[] | undefined {
  return info.value?.values;
}

/** Symbolic elements of a 1-D shape-like tensor, from its value or its tracked symbolic form. */
function symbolicOf(info: TensorInfo): Dim[] | undefined {
  if (info.symbolic) return info.symbolic;
  if (info.value && info.value.dims.length <= 1) return info.value.values;
  return undefined;
}

function withValue(type: DataType, dims: number[], values: number[]): TensorInfo {
  return { type, shape: dims, value: { type, dims, values } };
}

function isIntType(type: DataType | undefined): boolean {
  return (
    type === DataType.INT64 ||
    type === DataType.INT32 ||
    type === DataType.INT16 ||
    type === DataType.INT8 ||
    type === DataType.UINT8 ||
    type === DataType.UINT16 ||
    type === DataType.UINT32 ||
    type === DataType.UINT64
  );
}

function roundTo(type: DataType, v: number): number {
  if (type === DataType.FLOAT) return Math.fround(v);
  if (isIntType(type)) return Math.trunc(v);
  if (type === DataType.BOOL) return v ? 1 : 0;
  return v;
}

/** Elementwise evaluation with numpy broadcasting, for small constants. */
function evalBroadcast(
  infos: readonly TensorInfo[],
  outType: DataType,
  fn: (...xs: number[]) => number,
): ConstValue | undefined {
  const values = infos.map((i) => i.value);
  if (values.some((v) => v === undefined)) return undefined;
  const vs = values as ConstValue[];
  const shape = broadcastShapes(vs.map((v) => v.dims)) as number[];
  const size = shape.reduce((a, b) => a * b, 1);
  if (size > MAX_CONST_ELEMENTS) return undefined;
  const strides = vs.map((v) => {
    const s: number[] = new Array(shape.length).fill(0);
    let acc = 1;
    for (let i = v.dims.length - 1; i >= 0; i--) {
      const j = i + shape.length - v.dims.length;
      s[j] = v.dims[i] === 1 ? 0 : acc;
      acc *= v.dims[i];
    }
    return s;
  });
  const out: number[] = [];
  const index = new Array(shape.length).fill(0);
  for (let k = 0; k < size; k++) {
    const args = vs.map((v, n) => v.values[index.reduce((o, ix, d) => o + ix * strides[n][d], 0)]);
    out.push(roundTo(outType, fn(...args)));
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return { type: outType, dims: shape, values: out };
}

/** Axes of a Reduce*, Squeeze, Unsqueeze: from the attribute in old opsets, the second input in new ones. */
export function axesOf(node: NodeProto, ctx: InferContext, inputIndex = 1): number[] | undefined | 'dynamic' {
  const fromAttr = attrInts(node, 'axes');
  if (fromAttr) return fromAttr;
  const name = node.input[inputIndex];
  if (!name) return undefined;
  const v = constOf(ctx.info(name));
  return v ? v : 'dynamic';
}

/** The parsed form of an Einsum equation: one term per operand and the output term, with '.' for ellipsis dims. */
export interface EinsumSpec {
  inputs: string[];
  output: string;
}

/**
 * Parse an Einsum equation (spaces allowed, implicit output = letters seen once, alphabetically). The ellipsis
 * is kept as the literal '...' token in each term.
 */
export function parseEinsum(equation: string): EinsumSpec {
  const eq = equation.replace(/\s+/g, '');
  const [lhs, rhs] = eq.split('->');
  const inputs = lhs.split(',');
  let output = rhs;
  if (output === undefined) {
    const counts = new Map<string, number>();
    for (const term of inputs)
      for (const ch of term.replace(/\.\.\./g, '')) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    const once = [...counts.entries()].filter(([, n]) => n === 1).map(([c]) => c);
    once.sort();
    output = (inputs.some((t) => t.includes('...')) ? '...' : '') + once.join('');
  }
  return { inputs, output };
}

/** Letters of an Einsum term with the ellipsis expanded to `n` placeholder names ('0', '1', …). */
export function expandEinsumTerm(term: string, ellipsisRank: number): string[] {
  const out: string[] = [];
  const at = term.indexOf('...');
  for (let i = 0; i < term.length; i++) {
    if (i === at) {
      for (let k = 0; k < ellipsisRank; k++) out.push(String(k));
      i += 2;
    } else out.push(term[i]);
  }
  return out;
}

function inferEinsum(node: NodeProto, ctx: InferContext): TensorInfo {
  const spec = parseEinsum(attrString(node, 'equation', ''));
  const type = ctx.info(node.input[0]).type;
  const shapes = node.input.map((n) => ctx.info(n).shape);
  if (shapes.some((s) => s === null)) return { type, shape: null };
  const dims = new Map<string, Dim>();
  let ell: Dim[] | null = [];
  spec.inputs.forEach((term, i) => {
    const s = shapes[i] as Dim[];
    const letters = term.replace('...', '').length;
    const ellRank = term.includes('...') ? s.length - letters : 0;
    const expanded = expandEinsumTerm(term, ellRank);
    expanded.forEach((c, k) => {
      if (/[0-9]/.test(c)) return;
      const prev = dims.get(c);
      dims.set(c, prev === undefined ? s[k] : broadcastDim(prev, s[k]));
    });
    if (ellRank > 0) {
      const at = term.indexOf('...');
      const ellDims = s.slice(at, at + ellRank);
      ell = broadcastShapes([ell, ellDims]);
    }
  });
  const outDims: Dim[] = [];
  for (const c of expandEinsumTerm(spec.output, (ell as Dim[] | null)?.length ?? 0)) {
    if (/[0-9]/.test(c)) outDims.push((ell as Dim[] | null)?.[Number(c)] ?? null);
    else outDims.push(dims.get(c) ?? null);
  }
  return { type, shape: outDims };
}

function convOutput(node: NodeProto, x: Shape, w: Shape, transposed: boolean): Shape {
  if (x === null) return null;
  const spatial = x.length - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? (w ? w.slice(2) : null);
  const channels = w ? (transposed ? mulDim(w[1], attrInt(node, 'group', 1)) : w[0]) : null;
  const out: Dim[] = [x[0], channels];
  const strides = attrInts(node, 'strides') ?? new Array(spatial).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array(spatial).fill(1);
  const pads = attrInts(node, 'pads') ?? new Array(2 * spatial).fill(0);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  const outputShape = attrInts(node, 'output_shape');
  const outputPadding = attrInts(node, 'output_padding') ?? new Array(spatial).fill(0);
  for (let i = 0; i < spatial; i++) {
    const inDim = x[2 + i];
    const k = kernel ? kernel[i] : null;
    if (typeof inDim !== 'number' || typeof k !== 'number') {
      out.push(transposed && outputShape ? outputShape[i] : null);
      continue;
    }
    const eff = (k - 1) * dil[i] + 1;
    if (transposed) {
      if (outputShape) out.push(outputShape[outputShape.length - spatial + i]);
      else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') out.push(inDim * strides[i]);
      else out.push(strides[i] * (inDim - 1) + outputPadding[i] + eff - pads[i] - pads[i + spatial]);
    } else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      out.push(Math.ceil(inDim / strides[i]));
    } else if (autoPad === 'VALID') {
      out.push(Math.floor((inDim - eff) / strides[i]) + 1);
    } else {
      const ceil = attrInt(node, 'ceil_mode', 0);
      const v = (inDim + pads[i] + pads[i + spatial] - eff) / strides[i];
      out.push((ceil ? Math.ceil(v) : Math.floor(v)) + 1);
    }
  }
  return out;
}

function mulDim(a: Dim, b: number): Dim {
  return typeof a === 'number' ? a * b : null;
}

function reduceShape(x: Shape, axes: number[] | undefined | 'dynamic', keep: boolean, noop: boolean): Shape {
  if (x === null) return null;
  if (axes === 'dynamic') return keep ? x.map(() => null) : null;
  if (axes === undefined || axes.length === 0) {
    if (noop) return x;
    return keep ? x.map(() => 1) : [];
  }
  const set = new Set(axes.map((a) => normAxis(a, x.length)));
  const out: Dim[] = [];
  x.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return out;
}

/** Resolve a Reshape target against the input shape (0 copies a dim unless allowzero, -1 is inferred). */
function reshapeShape(x: Shape, target: Dim[], allowZero: boolean): Shape {
  const out: Dim[] = target.map((d, i) => {
    if (d === 0 && !allowZero) return x && i < x.length ? x[i] : null;
    return d;
  });
  const minus = out.findIndex((d) => d === -1);
  if (minus >= 0) {
    const total = x ? product(x) : null;
    const rest = product(out.filter((_, i) => i !== minus));
    if (typeof total === 'number' && typeof rest === 'number' && rest > 0) out[minus] = total / rest;
    else if (x !== null) {
      // The unknown dim keeps its symbol when the other dims match one-for-one by symbol.
      const known = out.filter((_, i) => i !== minus);
      const remaining = [...x];
      let ok = true;
      for (const d of known) {
        const j = remaining.findIndex((r) => r !== null && r === d);
        if (j < 0) {
          ok = false;
          break;
        }
        remaining.splice(j, 1);
      }
      out[minus] = ok && remaining.length === 1 ? remaining[0] : null;
    } else out[minus] = null;
  }
  return out;
}

function sliceParams(
  node: NodeProto,
  ctx: InferContext,
): { starts: number[]; ends: number[]; axes?: number[]; steps?: number[] } | undefined {
  if (ctx.opset < 10) {
    const starts = attrInts(node, 'starts');
    const ends = attrInts(node, 'ends');
    if (!starts || !ends) return undefined;
    return { starts, ends, axes: attrInts(node, 'axes') };
  }
  const starts = constOf(ctx.info(node.input[1]));
  const ends = constOf(ctx.info(node.input[2]));
  if (!starts || !ends) return undefined;
  const axes = node.input[3] ? constOf(ctx.info(node.input[3])) : undefined;
  const steps = node.input[4] ? constOf(ctx.info(node.input[4])) : undefined;
  if ((node.input[3] && !axes) || (node.input[4] && !steps)) return undefined;
  return { starts, ends, axes, steps };
}

/** Clamped [start, end, step] of one sliced axis of static size `dim`, per the ONNX Slice rules. */
export function clampSlice(start: number, end: number, step: number, dim: number): [number, number] {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
  } else {
    start = Math.min(Math.max(start, 0), dim - 1);
    end = Math.min(Math.max(end, -1), dim - 1);
  }
  return [start, end];
}

function sliceLength(start: number, end: number, step: number): number {
  return Math.max(0, Math.ceil((end - start) / step));
}

function splitSizes(node: NodeProto, ctx: InferContext, dim: Dim): (number | null)[] {
  const n = node.output.length;
  let sizes: number[] | undefined = attrInts(node, 'split');
  if (!sizes && ctx.opset >= 13 && node.input[1]) sizes = constOf(ctx.info(node.input[1]));
  if (sizes) return sizes;
  if (node.input[1] && ctx.opset >= 13) return new Array(n).fill(null);
  if (typeof dim !== 'number') return new Array(n).fill(null);
  const chunk = Math.ceil(dim / n);
  return Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, dim - i * chunk)));
}

function resizeShape(node: NodeProto, ctx: InferContext): Shape {
  const x = ctx.info(node.input[0]).shape;
  const isUpsample = node.opType === 'Upsample';
  let scalesName: string | undefined;
  let sizesName: string | undefined;
  if (isUpsample) {
    const scales = attrInts(node, 'scales') ? undefined : getAttr(node, 'scales')?.floats;
    if (scales && x)
      return x.map((d, i) =>
        typeof d === 'number' ? Math.floor(d * scales[i]) : scales[i] === 1 ? d : null,
      );
    scalesName = node.input[1];
  } else if (ctx.opset < 11) scalesName = node.input[1];
  else {
    scalesName = node.input[2];
    sizesName = node.input[3];
  }
  const axes = attrInts(node, 'axes');
  if (sizesName) {
    const sizes = constOf(ctx.info(sizesName));
    if (sizes && x) {
      const out = [...x];
      (axes ?? x.map((_, i) => i)).forEach((a, k) => (out[normAxis(a, x.length)] = sizes[k]));
      if (axes || sizes.length === x.length) return out;
    }
    const sizeShape = ctx.info(sizesName).shape;
    if (!axes && sizeShape && typeof sizeShape[0] === 'number') return new Array(sizeShape[0]).fill(null);
    return x ? x.map(() => null) : null;
  }
  if (scalesName) {
    const scales = constOf(ctx.info(scalesName));
    if (scales && x && scales.length > 0) {
      const out = [...x];
      (axes ?? x.map((_, i) => i)).forEach((a, k) => {
        const i = normAxis(a, x.length);
        const d = x[i];
        out[i] = scales[k] === 1 ? d : typeof d === 'number' ? Math.floor(d * scales[k]) : null;
      });
      return out;
    }
  }
  return x ? x.map(() => null) : null;
}

function constantNode(node: NodeProto): TensorInfo {
  const t = attrTensor(node, 'value');
  if (t) {
    const dims = tensorDims(t);
    const size = dims.reduce((a, b) => a * b, 1);
    const type = t.dataType;
    if (size <= MAX_CONST_ELEMENTS && type !== DataType.STRING)
      return withValue(type, dims, tensorToNumbers(t));
    return { type, shape: dims };
  }
  const f = attrFloat(node, 'value_float');
  if (f !== undefined) return withValue(DataType.FLOAT, [], [f]);
  const fs = getAttr(node, 'value_floats');
  if (fs) return withValue(DataType.FLOAT, [fs.floats.length], [...fs.floats]);
  const i = attrInt(node, 'value_int');
  if (i !== undefined) return withValue(DataType.INT64, [], [i]);
  const is = attrInts(node, 'value_ints');
  if (is) return withValue(DataType.INT64, [is.length], is);
  return UNKNOWN;
}

const SAME_AS_INPUT = new Set([
  'Identity',
  'Neg',
  'Abs',
  'Relu',
  'Sigmoid',
  'Tanh',
  'Exp',
  'Log',
  'Sqrt',
  'Erf',
  'Sin',
  'Cos',
  'Tan',
  'Asin',
  'Acos',
  'Atan',
  'Sinh',
  'Cosh',
  'Asinh',
  'Acosh',
  'Atanh',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'Softplus',
  'Softsign',
  'LeakyRelu',
  'Elu',
  'Selu',
  'Celu',
  'HardSigmoid',
  'HardSwish',
  'Gelu',
  'Mish',
  'Softmax',
  'LogSoftmax',
  'Hardmax',
  'Clip',
  'InstanceNormalization',
  'GroupNormalization',
  'BatchNormalization',
  'LpNormalization',
  'MeanVarianceNormalization',
  'Trilu',
  'CumSum',
  'ThresholdedRelu',
  'Shrink',
  'PRelu',
]);
const COMPARISON = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor']);
const ELEMENTWISE: Record<string, (...xs: number[]) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
  Mod: (a, b) => a - Math.floor(a / b) * b,
  Max: (...xs) => Math.max(...xs),
  Min: (...xs) => Math.min(...xs),
  Sum: (...xs) => xs.reduce((s, x) => s + x, 0),
  Mean: (...xs) => xs.reduce((s, x) => s + x, 0) / xs.length,
  Equal: (a, b) => Number(a === b),
  Less: (a, b) => Number(a < b),
  Greater: (a, b) => Number(a > b),
  LessOrEqual: (a, b) => Number(a <= b),
  GreaterOrEqual: (a, b) => Number(a >= b),
  And: (a, b) => Number(Boolean(a) && Boolean(b)),
  Or: (a, b) => Number(Boolean(a) || Boolean(b)),
  Xor: (a, b) => Number(Boolean(a) !== Boolean(b)),
};
const UNARY_VALUE: Record<string, (x: number) => number> = {
  Identity: (x) => x,
  Neg: (x) => -x,
  Abs: Math.abs,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Sqrt: Math.sqrt,
  Relu: (x) => Math.max(x, 0),
  Sign: Math.sign,
  Reciprocal: (x) => 1 / x,
};

/** Infers the outputs of one node; unknown parts come back as undefined types and null shapes. */
export function inferNode(node: NodeProto, ctx: InferContext): TensorInfo[] {
  const outs = node.output.length;
  const fill = (info: TensorInfo): TensorInfo[] => [info, ...new Array(Math.max(0, outs - 1)).fill(UNKNOWN)];
  if (node.domain && node.domain !== 'ai.onnx') return new Array(outs).fill(UNKNOWN);
  const x = node.input[0] ? ctx.info(node.input[0]) : UNKNOWN;
  const op = node.opType;

  if (op === 'Constant') return [constantNode(node)];
  if (SAME_AS_INPUT.has(op)) {
    const info: TensorInfo = { type: x.type, shape: x.shape };
    const f = UNARY_VALUE[op];
    if (f && x.value && x.type !== undefined)
      info.value = { ...x.value, values: x.value.values.map((v) => roundTo(x.type!, f(v))) };
    if (op === 'Identity' && x.symbolic) info.symbolic = x.symbolic;
    return fill(info);
  }
  if (op === 'Dropout') {
    return [
      { type: x.type, shape: x.shape, value: x.value },
      { type: DataType.BOOL, shape: x.shape },
    ];
  }
  if (op === 'LayerNormalization') {
    const axis = attrInt(node, 'axis', -1);
    const stat = x.shape ? x.shape.map((d, i) => (i >= normAxis(axis, x.shape!.length) ? 1 : d)) : null;
    return [{ type: x.type, shape: x.shape }, { shape: stat }, { shape: stat }].slice(0, outs);
  }
  if (ELEMENTWISE[op] || op === 'Where' || op === 'Not' || op === 'IsNaN' || op === 'IsInf') {
    const infos = node.input.map((n) => ctx.info(n));
    const shape = broadcastShapes(infos.map((i) => i.shape));
    if (op === 'Where') {
      const [c, a, b] = infos;
      const info: TensorInfo = { type: a.type ?? b.type, shape };
      if (c.value && a.value && b.value && info.type !== undefined) {
        info.value = evalBroadcast(infos, info.type, (cv, av, bv) => (cv ? av : bv));
      }
      return [info];
    }
    if (op === 'Not' || op === 'IsNaN' || op === 'IsInf') return [{ type: DataType.BOOL, shape: x.shape }];
    const type = COMPARISON.has(op) ? DataType.BOOL : x.type;
    const info: TensorInfo = { type, shape };
    if (type !== undefined) {
      const fn = ELEMENTWISE[op];
      const intDiv = op === 'Div' && isIntType(type);
      info.value = evalBroadcast(infos, type, intDiv ? (a, b) => Math.trunc(a / b) : fn);
      // Shape vectors scaled by constants stay partly symbolic only through identity-like arithmetic.
      if (!info.value && infos.length === 2 && infos[0].symbolic && infos[1].value?.values.length === 1) {
        const k = infos[1].value.values[0];
        if ((op === 'Mul' || op === 'Div') && k === 1) info.symbolic = infos[0].symbolic;
        if ((op === 'Add' || op === 'Sub') && k === 0) info.symbolic = infos[0].symbolic;
      }
    }
    return [info];
  }

  switch (op) {
    case 'Cast': {
      const to = attrInt(node, 'to', DataType.FLOAT);
      const info: TensorInfo = { type: to, shape: x.shape };
      if (x.value)
        info.value = { type: to, dims: x.value.dims, values: x.value.values.map((v) => roundTo(to, v)) };
      if (x.symbolic && isIntType(to)) info.symbolic = x.symbolic;
      return [info];
    }
    case 'CastLike': {
      const to = ctx.info(node.input[1]).type;
      const info: TensorInfo = { type: to, shape: x.shape };
      if (x.value && to !== undefined)
        info.value = { type: to, dims: x.value.dims, values: x.value.values.map((v) => roundTo(to, v)) };
      return [info];
    }
    case 'Shape': {
      if (x.shape === null) return [{ type: DataType.INT64, shape: [null] }];
      const r = x.shape.length;
      let start = attrInt(node, 'start', 0);
      let end = attrInt(node, 'end', r);
      start = Math.min(Math.max(normAxis(start, r), 0), r);
      end = Math.min(Math.max(normAxis(end, r), 0), r);
      const dims = x.shape.slice(start, Math.max(start, end));
      const info: TensorInfo = { type: DataType.INT64, shape: [dims.length], symbolic: dims };
      if (isStatic(dims)) info.value = { type: DataType.INT64, dims: [dims.length], values: dims };
      return [info];
    }
    case 'Size': {
      const n = x.shape ? product(x.shape) : null;
      return [
        typeof n === 'number' ? withValue(DataType.INT64, [], [n]) : { type: DataType.INT64, shape: [] },
      ];
    }
    case 'ConstantOfShape': {
      const t = attrTensor(node, 'value');
      const type = t ? t.dataType : DataType.FLOAT;
      const fillValue = t ? (tensorToNumbers(t)[0] ?? 0) : 0;
      const dims = constOf(x);
      if (dims) {
        const size = dims.reduce((a, b) => a * b, 1);
        if (size <= MAX_CONST_ELEMENTS) return [withValue(type, dims, new Array(size).fill(fillValue))];
        return [{ type, shape: dims }];
      }
      const sym = symbolicOf(x);
      if (sym) return [{ type, shape: sym }];
      const len = x.shape?.[0];
      return [{ type, shape: typeof len === 'number' ? new Array(len).fill(null) : null }];
    }
    case 'Range': {
      const [s, l, d] = node.input.map((n) => constOf(ctx.info(n))?.[0]);
      const type = x.type;
      if (s !== undefined && l !== undefined && d !== undefined && type !== undefined) {
        const n = Math.max(Math.ceil((l - s) / d), 0);
        if (n <= MAX_CONST_ELEMENTS)
          return [
            withValue(
              type,
              [n],
              Array.from({ length: n }, (_, i) => s + i * d),
            ),
          ];
        return [{ type, shape: [n] }];
      }
      return [{ type, shape: [null] }];
    }
    case 'MatMul': {
      const a = x.shape;
      const b = ctx.info(node.input[1]).shape;
      if (a === null || b === null) return [{ type: x.type, shape: null }];
      const a2 = a.length === 1 ? [1, a[0]] : a;
      const b2 = b.length === 1 ? [b[0], 1] : b;
      const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)]) ?? [];
      const out: Dim[] = [...batch];
      if (a.length > 1) out.push(a2[a2.length - 2]);
      if (b.length > 1) out.push(b2[b2.length - 1]);
      return [{ type: x.type, shape: out }];
    }
    case 'Gemm': {
      const a = x.shape;
      const b = ctx.info(node.input[1]).shape;
      const m = a ? (attrInt(node, 'transA', 0) ? a[1] : a[0]) : null;
      const n = b ? (attrInt(node, 'transB', 0) ? b[0] : b[1]) : null;
      return [{ type: x.type, shape: [m ?? null, n ?? null] }];
    }
    case 'Einsum':
      return [inferEinsum(node, ctx)];
    case 'Conv':
    case 'ConvTranspose':
    case 'AveragePool':
    case 'MaxPool':
    case 'LpPool': {
      const w =
        node.input[1] && (op === 'Conv' || op === 'ConvTranspose') ? ctx.info(node.input[1]).shape : null;
      let shape = convOutput(node, x.shape, w, op === 'ConvTranspose');
      if (shape && op !== 'Conv' && op !== 'ConvTranspose') shape[1] = x.shape![1];
      if (shape && (op === 'Conv' || op === 'ConvTranspose') && !w)
        shape = [shape[0], null, ...shape.slice(2)];
      return fill({ type: x.type, shape });
    }
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
      return [{ type: x.type, shape: x.shape ? x.shape.map((d, i) => (i < 2 ? d : 1)) : null }];
    case 'Reshape': {
      const allowZero = attrInt(node, 'allowzero', 0) === 1;
      const targetInfo = ctx.info(node.input[1]);
      const target = symbolicOf(targetInfo);
      const info: TensorInfo = { type: x.type, shape: null };
      if (target) info.shape = reshapeShape(x.shape, target, allowZero);
      else if (targetInfo.shape && typeof targetInfo.shape[0] === 'number')
        info.shape = new Array(targetInfo.shape[0]).fill(null);
      if (x.value && info.shape && isStatic(info.shape)) info.value = { ...x.value, dims: info.shape };
      if (x.symbolic && info.shape?.length === 1) info.symbolic = x.symbolic;
      return [info];
    }
    case 'Flatten': {
      if (x.shape === null) return [{ type: x.type, shape: [null, null] }];
      const axis = normAxis(attrInt(node, 'axis', 1), x.shape.length);
      return [{ type: x.type, shape: [product(x.shape.slice(0, axis)), product(x.shape.slice(axis))] }];
    }
    case 'Transpose': {
      if (x.shape === null) return [{ type: x.type, shape: null }];
      const perm = attrInts(node, 'perm') ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
      const info: TensorInfo = { type: x.type, shape: perm.map((p) => x.shape![p]) };
      return [info];
    }
    case 'Squeeze': {
      const axes = axesOf(node, ctx);
      if (x.shape === null || axes === 'dynamic') return [{ type: x.type, shape: null }];
      let drop: Set<number>;
      if (axes === undefined || axes.length === 0) {
        if (!x.shape.every((d) => typeof d === 'number')) return [{ type: x.type, shape: null }];
        drop = new Set(x.shape.flatMap((d, i) => (d === 1 ? [i] : [])));
      } else drop = new Set(axes.map((a) => normAxis(a, x.shape!.length)));
      const shape = x.shape.filter((_, i) => !drop.has(i));
      const info: TensorInfo = { type: x.type, shape };
      if (x.value) info.value = { ...x.value, dims: shape as number[] };
      if (x.symbolic && shape.length <= 1) info.symbolic = x.symbolic;
      return [info];
    }
    case 'Unsqueeze': {
      const axes = axesOf(node, ctx);
      if (x.shape === null || axes === 'dynamic' || axes === undefined)
        return [{ type: x.type, shape: null }];
      const rank = x.shape.length + axes.length;
      const set = new Set(axes.map((a) => normAxis(a, rank)));
      const shape: Dim[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) shape.push(set.has(i) ? 1 : x.shape[k++]);
      const info: TensorInfo = { type: x.type, shape };
      if (x.value) info.value = { ...x.value, dims: shape as number[] };
      if (x.shape.length === 0 && rank === 1)
        info.symbolic = symbolicOf(x) ?? (x.value ? x.value.values : undefined);
      return [info];
    }
    case 'Concat': {
      const infos = node.input.filter((n) => n).map((n) => ctx.info(n));
      const shapes = infos.map((i) => i.shape);
      const type = infos.find((i) => i.type !== undefined)?.type;
      const known = shapes.find((s) => s !== null);
      if (!known) return [{ type, shape: null }];
      const axis = normAxis(attrInt(node, 'axis', 0), known.length);
      const shape: Dim[] = known.map((_, i) => {
        if (i === axis) {
          let total = 0;
          for (const s of shapes) {
            const d = s?.[i];
            if (typeof d !== 'number') return null;
            total += d;
          }
          return total;
        }
        for (const s of shapes) if (s && s[i] !== null) return s[i];
        return null;
      });
      const info: TensorInfo = { type, shape };
      if (type !== undefined && infos.every((i) => i.value) && known.length === 1) {
        const values = infos.flatMap((i) => i.value!.values);
        info.value = { type, dims: [values.length], values };
      }
      if (known.length === 1 && infos.every((i) => symbolicOf(i)))
        info.symbolic = infos.flatMap((i) => symbolicOf(i)!);
      return [info];
    }
    case 'Split': {
      if (x.shape === null) return new Array(outs).fill({ type: x.type, shape: null });
      const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length);
      const sizes = splitSizes(node, ctx, x.shape[axis]);
      return node.output.map((_, k) => ({
        type: x.type,
        shape: x.shape!.map((d, i) => (i === axis ? (sizes[k] ?? null) : d)),
      }));
    }
    case 'Slice': {
      const p = sliceParams(node, ctx);
      if (x.shape === null) return [{ type: x.type, shape: null }];
      if (!p) return [{ type: x.type, shape: x.shape.map(() => null) }];
      const shape = [...x.shape];
      const axes = p.axes ?? p.starts.map((_, i) => i);
      const picks: [number, number, number][] = [];
      axes.forEach((a, k) => {
        const i = normAxis(a, shape.length);
        const step = p.steps?.[k] ?? 1;
        const d = x.shape![i];
        if (typeof d === 'number') {
          const [s, e] = clampSlice(p.starts[k], p.ends[k], step, d);
          shape[i] = sliceLength(s, e, step);
          picks.push([i, s, step]);
        } else if (p.starts[k] === 0 && step === 1 && p.ends[k] >= 2 ** 31 - 1) shape[i] = d;
        else shape[i] = null;
      });
      const info: TensorInfo = { type: x.type, shape };
      const src = symbolicOf(x);
      if (x.shape.length === 1 && src && picks.length === 1 && typeof shape[0] === 'number') {
        const [, s, step] = picks[0];
        const elems = Array.from({ length: shape[0] }, (_, k) => src[s + k * step]);
        info.symbolic = elems;
        if (x.value && x.type !== undefined)
          info.value = { type: x.type, dims: [elems.length], values: elems as number[] };
      }
      return [info];
    }
    case 'Gather': {
      const idx = ctx.info(node.input[1]);
      if (x.shape === null || idx.shape === null) return [{ type: x.type, shape: null }];
      const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length);
      const shape = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
      const info: TensorInfo = { type: x.type, shape };
      const src = symbolicOf(x);
      if (x.shape.length === 1 && src && idx.value) {
        const n = src.length;
        const picked = idx.value.values.map((i) => src[i < 0 ? i + n : i] ?? null);
        if (idx.value.dims.length <= 1) info.symbolic = picked;
        if (picked.every((d) => typeof d === 'number') && x.type !== undefined) {
          info.value = { type: x.type, dims: idx.value.dims, values: picked as number[] };
        }
      }
      return [info];
    }
    case 'GatherElements':
      return [{ type: x.type, shape: ctx.info(node.input[1]).shape }];
    case 'Expand': {
      const target = symbolicOf(ctx.info(node.input[1]));
      if (!target) return [{ type: x.type, shape: null }];
      return [{ type: x.type, shape: broadcastShapes([x.shape, target]) }];
    }
    case 'Tile': {
      const reps = constOf(ctx.info(node.input[1]));
      if (!x.shape || !reps) return [{ type: x.type, shape: x.shape ? x.shape.map(() => null) : null }];
      return [
        {
          type: x.type,
          shape: x.shape.map((d, i) => (reps[i] === 1 ? d : typeof d === 'number' ? d * reps[i] : null)),
        },
      ];
    }
    case 'Pad': {
      const pads = ctx.opset < 11 ? attrInts(node, 'pads') : constOf(ctx.info(node.input[1]));
      if (!x.shape) return [{ type: x.type, shape: null }];
      if (!pads) return [{ type: x.type, shape: x.shape.map(() => null) }];
      const r = x.shape.length;
      const axes = ctx.opset >= 18 && node.input[3] ? constOf(ctx.info(node.input[3])) : undefined;
      if (ctx.opset >= 18 && node.input[3] && !axes)
        return [{ type: x.type, shape: x.shape.map(() => null) }];
      const list = (axes ?? x.shape.map((_, i) => i)).map((a) => normAxis(a, r));
      const shape = [...x.shape];
      list.forEach((a, k) => {
        const extra = pads[k] + pads[k + list.length];
        const d = shape[a];
        shape[a] = extra === 0 ? d : typeof d === 'number' ? d + extra : null;
      });
      return [{ type: x.type, shape }];
    }
    case 'Resize':
    case 'Upsample':
      return [{ type: x.type, shape: resizeShape(node, ctx) }];
    case 'ReduceSum':
    case 'ReduceMean':
    case 'ReduceMax':
    case 'ReduceMin':
    case 'ReduceProd':
    case 'ReduceL1':
    case 'ReduceL2':
    case 'ReduceSumSquare':
    case 'ReduceLogSum':
    case 'ReduceLogSumExp': {
      const axesInInput = op === 'ReduceSum' ? ctx.opset >= 13 : ctx.opset >= 18;
      const axes = axesInInput ? (node.input[1] ? axesOf(node, ctx) : undefined) : attrInts(node, 'axes');
      const keep = attrInt(node, 'keepdims', 1) === 1;
      const noop = attrInt(node, 'noop_with_empty_axes', 0) === 1;
      const shape = reduceShape(x.shape, axes, keep, noop);
      const info: TensorInfo = { type: x.type, shape };
      if (
        x.value &&
        x.type !== undefined &&
        (axes === undefined || (Array.isArray(axes) && axes.length === 0)) &&
        !noop
      ) {
        const vs = x.value.values;
        const all: Record<string, () => number> = {
          ReduceSum: () => vs.reduce((a, b) => a + b, 0),
          ReduceProd: () => vs.reduce((a, b) => a * b, 1),
          ReduceMax: () => Math.max(...vs),
          ReduceMin: () => Math.min(...vs),
        };
        const f = all[op];
        if (f && shape && isStatic(shape))
          info.value = { type: x.type, dims: shape, values: [roundTo(x.type, f())] };
      }
      return [info];
    }
    case 'ArgMax':
    case 'ArgMin': {
      const keep = attrInt(node, 'keepdims', 1) === 1;
      return [{ type: DataType.INT64, shape: reduceShape(x.shape, [attrInt(node, 'axis', 0)], keep, false) }];
    }
    case 'NonZero':
      return [{ type: DataType.INT64, shape: [x.shape ? x.shape.length : null, null] }];
    case 'OneHot': {
      const idx = x.shape;
      const depth = constOf(ctx.info(node.input[1]))?.[0] ?? null;
      const type = ctx.info(node.input[2]).type;
      if (!idx) return [{ type, shape: null }];
      const rank = idx.length + 1;
      const axis = normAxis(attrInt(node, 'axis', -1), rank);
      const shape = [...idx];
      shape.splice(axis, 0, depth);
      return [{ type, shape }];
    }
    case 'DepthToSpace':
    case 'SpaceToDepth': {
      const b = attrInt(node, 'blocksize', 1);
      if (!x.shape) return [{ type: x.type, shape: null }];
      const [n, c, h, w] = x.shape;
      const up = op === 'DepthToSpace';
      const f = (d: Dim, k: number, mul: boolean): Dim =>
        typeof d === 'number' ? (mul ? d * k : d / k) : null;
      return [{ type: x.type, shape: [n, f(c, b * b, !up), f(h, b, up), f(w, b, up)] }];
    }
    case 'GridSample': {
      const g = ctx.info(node.input[1]).shape;
      if (!x.shape || !g) return [{ type: x.type, shape: null }];
      return [{ type: x.type, shape: [x.shape[0], x.shape[1], ...g.slice(1, -1)] }];
    }
    case 'TopK': {
      const k = constOf(ctx.info(node.input[1]))?.[0] ?? null;
      const axis = attrInt(node, 'axis', -1);
      const shape = x.shape ? x.shape.map((d, i) => (i === normAxis(axis, x.shape!.length) ? k : d)) : null;
      return [
        { type: x.type, shape },
        { type: DataType.INT64, shape },
      ];
    }
    default:
      return new Array(outs).fill(UNKNOWN);
  }
}

/** Parse a ValueInfo type into element type and shape. */
export function shapeFromDims(
  dims: readonly { dimValue?: unknown; dimParam?: string | null }[] | null | undefined,
): Dim[] {
  return (dims ?? []).map((d) => {
    if (d.dimValue !== null && d.dimValue !== undefined) return toNumber(d.dimValue as number);
    if (d.dimParam) return d.dimParam;
    return null;
  });
}
