/**
 * Reading and writing ONNX ModelProto from TypeScript, with the `onnx-proto` static protobuf module.
 *
 * `onnx-proto` is generated from onnx.proto of ONNX 1.10 (IR version 8). Fields added to the proto later
 * (metadata_props on nodes and graphs, multi-device configurations) are dropped on decode; nothing EditKit
 * differentiates uses them. Newer data types (float8, int4) are kept as plain enum numbers.
 *
 * Int64 proto fields decode to `Long` objects and are written by us as plain numbers; {@link toNumber} reads
 * either. Tensors loaded from disk always end up with their bytes in `rawData` (external data resolved into
 * memory), which is what {@link serializeModel} needs to create a session from a buffer.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import pkg from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../runtime/float16.js';

/** The generated protobuf classes (`onnx.ModelProto.decode`, `onnx.NodeProto.create`, …). */
export const onnx = pkg.onnx;

export type ModelProto = OnnxTypes.ModelProto;
export type GraphProto = OnnxTypes.GraphProto;
export type NodeProto = OnnxTypes.NodeProto;
export type TensorProto = OnnxTypes.TensorProto;
export type ValueInfoProto = OnnxTypes.ValueInfoProto;
export type AttributeProto = OnnxTypes.AttributeProto;
export type TypeProto = OnnxTypes.TypeProto;

/**
 * A graph as decoded or created here: every repeated field present. (onnx-proto types message fields with the
 * all-optional `I…` interfaces; this view is what decoded messages actually hold.)
 */
export interface GraphView {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
}

/** The model's graph (throws when there is none). */
export function graphOf(model: OnnxTypes.IModelProto): GraphView {
  if (!model.graph) throw new Error('the model has no graph');
  return model.graph as unknown as GraphView;
}

/** A protobuf int64 as decoded (`Long`) or as written by us (`number`). */
export type Int64Like = number | { toNumber(): number };

/** TensorProto.DataType values, including those newer than onnx-proto's enum. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;
export type DataType = number;

const DATA_TYPE_NAMES = new Map<number, string>(
  Object.entries(DataType).map(([k, v]) => [v, k.toLowerCase()]),
);

export function dataTypeName(type: DataType): string {
  return DATA_TYPE_NAMES.get(type) ?? `dtype#${type}`;
}

/** Types that carry gradients: everything else (integers, bool, strings) stops differentiation. */
export function isFloatType(type: DataType | undefined): boolean {
  return (
    type === DataType.FLOAT ||
    type === DataType.FLOAT16 ||
    type === DataType.DOUBLE ||
    type === DataType.BFLOAT16
  );
}

const BYTES: Partial<Record<number, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.UINT16]: 2,
  [DataType.INT16]: 2,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.UINT32]: 4,
  [DataType.UINT64]: 8,
  [DataType.COMPLEX64]: 8,
  [DataType.COMPLEX128]: 16,
  [DataType.BFLOAT16]: 2,
  [DataType.FLOAT8E4M3FN]: 1,
  [DataType.FLOAT8E4M3FNUZ]: 1,
  [DataType.FLOAT8E5M2]: 1,
  [DataType.FLOAT8E5M2FNUZ]: 1,
};

export function bytesPerElement(type: DataType): number {
  const n = BYTES[type];
  if (n === undefined) throw new Error(`tensor type ${dataTypeName(type)} has no fixed element size`);
  return n;
}

export function toNumber(value: Int64Like | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** Whether a decoded (or created) message set `field` itself, rather than showing the prototype default. */
export function hasField(message: object, field: string): boolean {
  return (
    Object.prototype.hasOwnProperty.call(message, field) &&
    (message as Record<string, unknown>)[field] != null
  );
}

// ---------------------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------------------

export function tensorDims(tensor: OnnxTypes.ITensorProto): number[] {
  return (tensor.dims ?? []).map(toNumber);
}

export function tensorSize(tensor: OnnxTypes.ITensorProto): number {
  return tensorDims(tensor).reduce((a, b) => a * b, 1);
}

/** Whether the tensor's bytes live in an external file that was not read (loadModel with `externalData: false`). */
export function isExternal(tensor: OnnxTypes.ITensorProto): boolean {
  return tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
}

/** An aligned copy: decoded bytes are views into the file buffer at arbitrary offsets. */
function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out.buffer;
}

/**
 * The tensor's values as little-endian bytes in its own data type, whichever field holds them (raw_data or the
 * typed repeated fields). Throws for external data that was not loaded (see {@link loadModel}).
 */
export function tensorBytes(tensor: OnnxTypes.ITensorProto): Uint8Array {
  const type = tensor.dataType ?? 0;
  if (isExternal(tensor)) {
    throw new Error(`tensor '${tensor.name}' has external data that was not loaded (use loadModel)`);
  }
  if (tensor.rawData && tensor.rawData.byteLength > 0) return tensor.rawData;
  const n = tensorSize(tensor);
  if (n === 0) return new Uint8Array(0);
  const bytes = bytesPerElement(type);
  const out = new Uint8Array(n * bytes);
  const view = new DataView(out.buffer);
  const need = (values: ArrayLike<unknown> | null | undefined, field: string, count = n) => {
    if (!values || values.length !== count) {
      throw new Error(
        `tensor '${tensor.name}' (${dataTypeName(type)}, ${n} elements) has ${values?.length ?? 0} values in ${field}`,
      );
    }
    return values;
  };
  switch (type) {
    case DataType.FLOAT:
    case DataType.COMPLEX64: {
      const v = need(tensor.floatData, 'float_data', type === DataType.FLOAT ? n : 2 * n) as number[];
      v.forEach((x, i) => view.setFloat32(4 * i, x, true));
      break;
    }
    case DataType.DOUBLE:
    case DataType.COMPLEX128: {
      const v = need(tensor.doubleData, 'double_data', type === DataType.DOUBLE ? n : 2 * n) as number[];
      v.forEach((x, i) => view.setFloat64(8 * i, x, true));
      break;
    }
    case DataType.INT64: {
      const v = need(tensor.int64Data, 'int64_data') as Int64Like[];
      v.forEach((x, i) => view.setBigInt64(8 * i, int64ToBigInt(x), true));
      break;
    }
    case DataType.UINT32:
    case DataType.UINT64: {
      const v = need(tensor.uint64Data, 'uint64_data') as Int64Like[];
      v.forEach((x, i) => {
        if (type === DataType.UINT32) view.setUint32(4 * i, toNumber(x), true);
        else view.setBigUint64(8 * i, BigInt.asUintN(64, int64ToBigInt(x)), true);
      });
      break;
    }
    case DataType.INT32:
    case DataType.INT16:
    case DataType.INT8:
    case DataType.UINT16:
    case DataType.UINT8:
    case DataType.BOOL:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ: {
      const v = need(tensor.int32Data, 'int32_data') as number[];
      v.forEach((x, i) => {
        if (bytes === 4) view.setInt32(4 * i, x, true);
        else if (bytes === 2) view.setUint16(2 * i, x & 0xffff, true);
        else view.setUint8(i, x & 0xff);
      });
      break;
    }
    default:
      throw new Error(`tensor '${tensor.name}' has type ${dataTypeName(type)}, which EditKit cannot read`);
  }
  return out;
}

function int64ToBigInt(x: Int64Like): bigint {
  if (typeof x === 'number') return BigInt(x);
  const long = x as { low?: number; high?: number; toString(): string };
  if (typeof long.low === 'number' && typeof long.high === 'number') {
    return (BigInt(long.high) << 32n) | BigInt(long.low >>> 0);
  }
  return BigInt(long.toString());
}

/** The values of a numeric tensor as float64, converting from any numeric type (fp16, bf16 and ints too). */
export function tensorToFloat64(tensor: OnnxTypes.ITensorProto): Float64Array {
  const type = tensor.dataType ?? 0;
  const bytes = tensorBytes(tensor);
  const n = tensorSize(tensor);
  const buffer = alignedCopy(bytes);
  switch (type) {
    case DataType.FLOAT:
      return Float64Array.from(new Float32Array(buffer, 0, n));
    case DataType.DOUBLE:
      return new Float64Array(buffer, 0, n);
    case DataType.FLOAT16:
      return Float64Array.from(new Uint16Array(buffer, 0, n), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Float64Array.from(new Uint16Array(buffer, 0, n), bfloat16BitsToFloat32);
    case DataType.INT64:
      return Float64Array.from(new BigInt64Array(buffer, 0, n), Number);
    case DataType.UINT64:
      return Float64Array.from(new BigUint64Array(buffer, 0, n), Number);
    case DataType.INT32:
      return Float64Array.from(new Int32Array(buffer, 0, n));
    case DataType.UINT32:
      return Float64Array.from(new Uint32Array(buffer, 0, n));
    case DataType.INT16:
      return Float64Array.from(new Int16Array(buffer, 0, n));
    case DataType.UINT16:
      return Float64Array.from(new Uint16Array(buffer, 0, n));
    case DataType.INT8:
      return Float64Array.from(new Int8Array(buffer, 0, n));
    case DataType.UINT8:
    case DataType.BOOL:
      return Float64Array.from(new Uint8Array(buffer, 0, n));
    default:
      throw new Error(
        `tensor '${tensor.name}' has type ${dataTypeName(type)}, which has no numeric conversion here`,
      );
  }
}

/** The values as float32 (fp16/bf16/double/ints converted); a copy, safe to modify. */
export function tensorToFloat32(tensor: OnnxTypes.ITensorProto): Float32Array {
  const type = tensor.dataType ?? 0;
  if (type === DataType.FLOAT)
    return new Float32Array(alignedCopy(tensorBytes(tensor)), 0, tensorSize(tensor));
  if (type === DataType.FLOAT16) {
    const bits = new Uint16Array(alignedCopy(tensorBytes(tensor)), 0, tensorSize(tensor));
    return Float32Array.from(bits, float16BitsToFloat32);
  }
  return Float32Array.from(tensorToFloat64(tensor));
}

/** Integer tensors as exact bigints (int64 shapes and indices can exceed 2^53 only in pathological models). */
export function tensorToBigInt64(tensor: OnnxTypes.ITensorProto): BigInt64Array {
  const type = tensor.dataType ?? 0;
  if (type === DataType.INT64)
    return new BigInt64Array(alignedCopy(tensorBytes(tensor)), 0, tensorSize(tensor));
  return BigInt64Array.from(tensorToFloat64(tensor), (v) => BigInt(Math.trunc(v)));
}

/** Small tensors (shapes, axes, scales) as plain numbers. */
export function tensorToNumbers(tensor: OnnxTypes.ITensorProto): number[] {
  return Array.from(tensorToFloat64(tensor));
}

export function bfloat16BitsToFloat32(bits: number): number {
  const f = new Float32Array(new Uint32Array([bits << 16]).buffer);
  return f[0];
}

export function float32ToBfloat16Bits(value: number): number {
  const u = new Uint32Array(new Float32Array([value]).buffer)[0];
  if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) return ((u >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  const rounded = u + 0x7fff + ((u >>> 16) & 1); // round to nearest even
  return (rounded >>> 16) & 0xffff;
}

/** Values accepted by {@link makeTensor}: numbers are converted to the tensor's type; bigints for int64. */
export type TensorValues = ArrayLike<number> | BigInt64Array | readonly bigint[];

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/**
 * JS numbers cannot hold INT64_MAX exactly (2^63 − 1 rounds to 2^63), yet exports use it as "to the end" in
 * Slice; saturate instead of wrapping to INT64_MIN.
 */
function saturatingInt64(v: number): bigint {
  const b = BigInt(Math.trunc(v));
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
}

/** Little-endian bytes of `values` in `type`, rounding to fp16/bf16 and truncating to integers as needed. */
export function encodeValues(type: DataType, values: TensorValues): Uint8Array {
  const n = values.length;
  if (type === DataType.FLOAT && values instanceof Float32Array) {
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  }
  const out = new Uint8Array(n * bytesPerElement(type));
  const view = new DataView(out.buffer);
  const num = (i: number): number => Number(values[i]);
  for (let i = 0; i < n; i++) {
    switch (type) {
      case DataType.FLOAT:
        view.setFloat32(4 * i, num(i), true);
        break;
      case DataType.DOUBLE:
        view.setFloat64(8 * i, num(i), true);
        break;
      case DataType.FLOAT16:
        view.setUint16(2 * i, float32ToFloat16Bits(num(i)), true);
        break;
      case DataType.BFLOAT16:
        view.setUint16(2 * i, float32ToBfloat16Bits(num(i)), true);
        break;
      case DataType.INT64: {
        const v = values[i];
        view.setBigInt64(8 * i, typeof v === 'bigint' ? v : saturatingInt64(v as number), true);
        break;
      }
      case DataType.UINT64: {
        const v = values[i];
        view.setBigUint64(
          8 * i,
          typeof v === 'bigint' ? BigInt.asUintN(64, v) : BigInt(Math.trunc(v as number)),
          true,
        );
        break;
      }
      case DataType.INT32:
        view.setInt32(4 * i, num(i), true);
        break;
      case DataType.UINT32:
        view.setUint32(4 * i, num(i), true);
        break;
      case DataType.INT16:
        view.setInt16(2 * i, num(i), true);
        break;
      case DataType.UINT16:
        view.setUint16(2 * i, num(i), true);
        break;
      case DataType.INT8:
        view.setInt8(i, num(i));
        break;
      case DataType.UINT8:
        view.setUint8(i, num(i));
        break;
      case DataType.BOOL:
        view.setUint8(i, num(i) ? 1 : 0);
        break;
      default:
        throw new Error(`cannot write tensor values of type ${dataTypeName(type)}`);
    }
  }
  return out;
}

/** A tensor holding `values` converted to `type`, stored in raw_data. */
export function makeTensor(
  name: string,
  type: DataType,
  dims: readonly number[],
  values: TensorValues,
): TensorProto {
  const size = dims.reduce((a, b) => a * b, 1);
  if (values.length !== size) {
    throw new Error(
      `tensor '${name}': ${values.length} values for shape [${dims.join(', ')}] (${size} elements)`,
    );
  }
  return onnx.TensorProto.create({
    name,
    dataType: type,
    dims: [...dims],
    rawData: encodeValues(type, values),
  });
}

/**
 * Replace a tensor's values in place (e.g. an optimizer step on a weight), converting to the tensor's own type.
 * The typed repeated fields are cleared so that raw_data is the only copy.
 */
export function setTensorValues(tensor: TensorProto, values: TensorValues): void {
  if (values.length !== tensorSize(tensor)) {
    throw new Error(`tensor '${tensor.name}': ${values.length} values for ${tensorSize(tensor)} elements`);
  }
  tensor.rawData = encodeValues(tensor.dataType, values);
  tensor.floatData = [];
  tensor.int32Data = [];
  tensor.int64Data = [];
  tensor.doubleData = [];
  tensor.uint64Data = [];
  tensor.externalData = [];
  tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
}

// ---------------------------------------------------------------------------------------------------------
// Walking every tensor of a model (initializers, Constant attributes, subgraphs, functions)
// ---------------------------------------------------------------------------------------------------------

export function forEachGraph(graph: OnnxTypes.IGraphProto, fn: (g: OnnxTypes.IGraphProto) => void): void {
  fn(graph);
  for (const node of graph.node ?? []) forEachNodeSubgraph(node, fn);
}

function forEachNodeSubgraph(node: OnnxTypes.INodeProto, fn: (g: OnnxTypes.IGraphProto) => void): void {
  for (const attr of node.attribute ?? []) {
    if (attr.g) forEachGraph(attr.g, fn);
    for (const g of attr.graphs ?? []) forEachGraph(g, fn);
  }
}

/** Every TensorProto of the model: initializers (dense and sparse parts) and tensor attributes, in subgraphs too. */
export function forEachTensor(model: OnnxTypes.IModelProto, fn: (t: OnnxTypes.ITensorProto) => void): void {
  const visitNodes = (nodes: readonly OnnxTypes.INodeProto[] | null | undefined) => {
    for (const node of nodes ?? []) {
      for (const attr of node.attribute ?? []) {
        if (attr.t) fn(attr.t);
        for (const t of attr.tensors ?? []) fn(t);
        if (attr.sparseTensor) visitSparse(attr.sparseTensor);
      }
    }
  };
  const visitSparse = (s: OnnxTypes.ISparseTensorProto) => {
    if (s.values) fn(s.values);
    if (s.indices) fn(s.indices);
  };
  if (model.graph) {
    forEachGraph(model.graph, (g) => {
      for (const t of g.initializer ?? []) fn(t);
      for (const s of g.sparseInitializer ?? []) visitSparse(s);
      visitNodes(g.node);
    });
  }
  for (const f of model.functions ?? []) {
    visitNodes(f.node);
    for (const node of f.node ?? []) forEachNodeSubgraph(node, (g) => visitNodes(g.node));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------

export interface LoadOptions {
  /** Read external tensor data into memory (default true). Without it, such tensors keep their references. */
  externalData?: boolean;
}

function externalEntries(tensor: OnnxTypes.ITensorProto): Map<string, string> {
  return new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
}

/**
 * Decode an ONNX model and resolve external data (`location`/`offset`/`length` relative to the model's folder,
 * as torch.onnx and Optimum write `model.onnx_data` or `weights.pb`) into each tensor's raw_data.
 *
 * Locations must stay inside the model's folder, as ONNX Runtime also requires. Each external file is read
 * piecewise through one handle, so a multi-GB weight file is never held in a single buffer.
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<ModelProto> {
  const bytes = await readFile(path);
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw new Error(
      `'${path}' is not a valid ONNX model: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
  if (options.externalData !== false) await resolveExternalData(model, dirname(resolve(path)));
  return model;
}

/** Decode a model from bytes (no external data can be resolved without a folder). */
export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export async function resolveExternalData(model: ModelProto, baseDir: string): Promise<void> {
  const pending: OnnxTypes.ITensorProto[] = [];
  forEachTensor(model, (t) => {
    if (isExternal(t)) pending.push(t);
  });
  if (pending.length === 0) return;
  const handles = new Map<string, FileHandle>();
  try {
    for (const tensor of pending) {
      const entries = externalEntries(tensor);
      const location = entries.get('location');
      if (!location) throw new Error(`tensor '${tensor.name}' has external data without a location`);
      const file = resolve(baseDir, location);
      const rel = relative(baseDir, file);
      if (isAbsolute(location) || rel.startsWith('..') || isAbsolute(rel)) {
        throw new Error(
          `tensor '${tensor.name}': external data location '${location}' is outside the model's folder`,
        );
      }
      let handle = handles.get(file);
      if (!handle) {
        try {
          handle = await open(file, 'r');
        } catch (error) {
          throw new Error(
            `tensor '${tensor.name}' refers to external data '${location}' that cannot be opened (keep it next to the model)`,
            { cause: error },
          );
        }
        handles.set(file, handle);
      }
      const offset = Number(entries.get('offset') ?? '0');
      const size = (await handle.stat()).size;
      const expected = tensorSize(tensor) * bytesPerElement(tensor.dataType ?? 0);
      const length = entries.has('length') ? Number(entries.get('length')) : size - offset;
      if (length !== expected) {
        throw new Error(
          `tensor '${tensor.name}' (${dataTypeName(tensor.dataType ?? 0)} [${tensorDims(tensor).join(', ')}]) ` +
            `needs ${expected} bytes but its external data has length ${length}`,
        );
      }
      if (offset + length > size) {
        throw new Error(
          `tensor '${tensor.name}': bytes ${offset}..${offset + length} lie beyond the end of '${location}' (${size} bytes)`,
        );
      }
      const data = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(data, done, Math.min(length - done, 1 << 30), offset + done);
        if (bytesRead === 0)
          throw new Error(`unexpected end of '${location}' while reading tensor '${tensor.name}'`);
        done += bytesRead;
      }
      tensor.rawData = data;
      tensor.externalData = [];
      tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    }
  } finally {
    for (const h of handles.values()) await h.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------

/** Protobuf messages cannot exceed 2 GiB; past this the weights have to go to an external file. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;
const AUTO_EXTERNAL_BYTES = 1.75 * 2 ** 30;

function tensorByteLength(t: OnnxTypes.ITensorProto): number {
  if (isExternal(t)) return 0;
  if (t.rawData && t.rawData.byteLength) return t.rawData.byteLength;
  try {
    return tensorSize(t) * bytesPerElement(t.dataType ?? 0);
  } catch {
    return 0;
  }
}

function modelTensorBytes(model: ModelProto): number {
  let total = 0;
  forEachTensor(model, (t) => (total += tensorByteLength(t)));
  return total;
}

/**
 * The model as protobuf bytes, e.g. for `ort.InferenceSession.create(bytes)`. All tensors must be in memory: a
 * session made from a buffer has no folder to resolve external data against.
 */
export function serializeModel(model: ModelProto): Uint8Array {
  forEachTensor(model, (t) => {
    if (isExternal(t)) {
      throw new Error(
        `tensor '${t.name}' still refers to external data; load the model with loadModel() first`,
      );
    }
  });
  const total = modelTensorBytes(model);
  if (total > PROTOBUF_LIMIT - 64 * 2 ** 20) {
    throw new Error(
      `the model holds ${(total / 2 ** 30).toFixed(2)} GiB of tensors, more than one protobuf message can (2 GiB): ` +
        `save it with saveModel(model, path, { externalDataThreshold }) and create the session from the file`,
    );
  }
  return onnx.ModelProto.encode(model).finish();
}

export interface SaveOptions {
  /**
   * Initializers of at least this many bytes go to an external data file. Default: none, unless the tensors
   * exceed 1.75 GiB, in which case every initializer of 1 KiB or more goes out (a single protobuf cannot hold them).
   */
  externalDataThreshold?: number;
  /** The external data file's name, next to the model. Default `<model file name>_data` (e.g. `unet.onnx_data`). */
  externalDataFile?: string;
}

const ALIGN = 64;

const MOVED_FIELDS = [
  'rawData',
  'floatData',
  'int32Data',
  'int64Data',
  'doubleData',
  'uint64Data',
  'externalData',
  'dataLocation',
] as const satisfies readonly (keyof OnnxTypes.ITensorProto)[];

/**
 * Write the model, optionally moving large initializers to one external data file next to it (offsets aligned
 * to 64 bytes). The model object itself is left unchanged. Both files are written to temporary names and
 * renamed, so a reader never sees a half-written model.
 */
export async function saveModel(model: ModelProto, path: string, options: SaveOptions = {}): Promise<void> {
  let threshold = options.externalDataThreshold;
  if (threshold === undefined && modelTensorBytes(model) > AUTO_EXTERNAL_BYTES) threshold = 1024;
  const dataName = options.externalDataFile ?? `${basename(path)}_data`;
  if (dataName.includes('/') || dataName.includes(sep) || dataName === '..') {
    throw new Error(`externalDataFile must be a plain file name, got '${dataName}'`);
  }
  const moved: { tensor: OnnxTypes.ITensorProto; saved: Partial<OnnxTypes.ITensorProto>; offset: number }[] =
    [];
  if (threshold !== undefined) {
    let offset = 0;
    const seen = new Set<OnnxTypes.ITensorProto>();
    const take = (t: OnnxTypes.ITensorProto) => {
      if (seen.has(t) || isExternal(t) || tensorByteLength(t) < threshold! || tensorByteLength(t) === 0)
        return;
      seen.add(t);
      moved.push({ tensor: t, saved: {}, offset });
      offset += Math.ceil(tensorByteLength(t) / ALIGN) * ALIGN;
    };
    if (model.graph) forEachGraph(model.graph, (g) => (g.initializer ?? []).forEach(take));
  }
  const dir = dirname(resolve(path));
  const temp = (p: string) =>
    join(dirname(p), `.${basename(p)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const modelTemp = temp(resolve(path));
  const dataPath = join(dir, dataName);
  const dataTemp = temp(dataPath);
  try {
    if (moved.length > 0) {
      const handle = await open(dataTemp, 'wx');
      try {
        for (const m of moved) await handle.write(tensorBytes(m.tensor), 0, undefined, m.offset);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    let bytes: Uint8Array;
    try {
      for (const m of moved) {
        const t = m.tensor;
        const length = tensorByteLength(t);
        for (const field of MOVED_FIELDS) {
          if (Object.prototype.hasOwnProperty.call(t, field)) m.saved[field] = t[field] as never;
        }
        t.rawData = new Uint8Array(0);
        t.floatData = [];
        t.int32Data = [];
        t.int64Data = [];
        t.doubleData = [];
        t.uint64Data = [];
        t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        t.externalData = [
          { key: 'location', value: dataName },
          { key: 'offset', value: String(m.offset) },
          { key: 'length', value: String(length) },
        ];
      }
      const total = modelTensorBytes(model);
      if (total > PROTOBUF_LIMIT - 64 * 2 ** 20) {
        throw new Error(
          `${(total / 2 ** 30).toFixed(2)} GiB of tensors stay inside the model, more than protobuf allows: lower externalDataThreshold`,
        );
      }
      bytes = onnx.ModelProto.encode(model).finish();
    } finally {
      // Restore exactly, own properties included, so that re-encoding the caller's model gives the same bytes.
      for (const m of moved) {
        for (const field of MOVED_FIELDS) {
          if (field in m.saved) (m.tensor as Record<string, unknown>)[field] = m.saved[field];
          else delete (m.tensor as Record<string, unknown>)[field];
        }
      }
    }
    const handle = await open(modelTemp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (moved.length > 0) await rename(dataTemp, dataPath);
    await rename(modelTemp, resolve(path));
  } catch (error) {
    await rm(modelTemp, { force: true }).catch(() => undefined);
    await rm(dataTemp, { force: true }).catch(() => undefined);
    throw error;
  }
}

/** A deep copy through encode/decode (models below 2 GiB; Graph.fromModel shares tensors instead of copying). */
export function cloneModel(model: ModelProto): ModelProto {
  return onnx.ModelProto.decode(serializeModel(model));
}
