/**
 * A small safetensors reader/writer (the format of LoRA adapters on the Hugging Face hub and of diffusers'
 * `save_lora_weights`): an 8-byte little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { key: value } }`, then the tensor bytes,
 * little-endian, offsets relative to the end of the header. The writer pads the header with spaces to a multiple
 * of 8 bytes and lays tensors out in name order without gaps, as the reference implementation does.
 */
import { readFile } from 'node:fs/promises';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../runtime/float16.js';
import { writeFileAtomic } from '../util/files.js';
import { bfloat16BitsToFloat32, float32ToBfloat16Bits } from './onnx_io.js';

export type SafetensorsDType =
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'U16' | 'U32' | 'U64' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  BOOL: 1,
};

/** One tensor: its dtype, shape and raw little-endian bytes. */
export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** Headers larger than this are refused (the reference implementation's limit is 100 MB). */
const MAX_HEADER = 100 * 1024 * 1024;

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function parseSafetensors(bytes: Uint8Array, source = 'safetensors data'): SafetensorsFile {
  if (bytes.byteLength < 8) throw new Error(`${source}: too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER || 8 + headerLength > bytes.byteLength) {
    throw new Error(
      `${source}: header length ${headerLength} does not fit the ${bytes.byteLength}-byte file`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<
      string,
      unknown
    >;
  } catch (error) {
    throw new Error(`${source}: the header is not valid JSON`, { cause: error });
  }
  const data = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = Object.fromEntries(
        Object.entries(entry as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
      );
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = e.dtype as SafetensorsDType;
    if (typeof e.dtype !== 'string' || !(dtype in DTYPE_BYTES))
      throw new Error(`${source}: tensor '${name}' has unsupported dtype ${String(e.dtype)}`);
    const shape = e.shape as number[];
    const offsets = e.data_offsets as number[];
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw new Error(`${source}: tensor '${name}' has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2)
      throw new Error(`${source}: tensor '${name}' has bad data_offsets`);
    const [begin, end] = offsets;
    if (!(
      Number.isInteger(begin) &&
      Number.isInteger(end) &&
      0 <= begin &&
      begin <= end &&
      end <= data.byteLength
    )) {
      throw new Error(
        `${source}: tensor '${name}' lies outside the data (${begin}..${end} of ${data.byteLength} bytes)`,
      );
    }
    if (end - begin !== size(shape) * DTYPE_BYTES[dtype]) {
      throw new Error(
        `${source}: tensor '${name}' (${dtype} [${shape.join(', ')}]) has ${end - begin} bytes`,
      );
    }
    tensors.set(name, { dtype, shape: [...shape], data: data.subarray(begin, end) });
  }
  return { tensors, metadata };
}

export function serializeSafetensors(
  tensors: ReadonlyMap<string, SafeTensor> | Readonly<Record<string, SafeTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(
    ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const [name, t] of entries as [string, SafeTensor][]) {
    if (name === '__metadata__') throw new Error("'__metadata__' is not a valid tensor name");
    const bytes = size(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes)
      throw new Error(
        `tensor '${name}' (${t.dtype} [${t.shape.join(', ')}]) has ${t.data.byteLength} bytes, needs ${bytes}`,
      );
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (new TextEncoder().encode(json).byteLength % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const [, t] of entries as [string, SafeTensor][]) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readFile(path), `'${path}'`);
}

export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, SafeTensor> | Readonly<Record<string, SafeTensor>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

/** A tensor's values as float32, converting from any float or integer dtype. */
export function safeTensorToFloat32(t: SafeTensor): Float32Array {
  const n = size(t.shape);
  const copy = new Uint8Array(t.data.byteLength);
  copy.set(t.data);
  const buf = copy.buffer;
  switch (t.dtype) {
    case 'F32':
      return new Float32Array(buf, 0, n);
    case 'F64':
      return Float32Array.from(new Float64Array(buf, 0, n));
    case 'F16':
      return Float32Array.from(new Uint16Array(buf, 0, n), float16BitsToFloat32);
    case 'BF16':
      return Float32Array.from(new Uint16Array(buf, 0, n), bfloat16BitsToFloat32);
    case 'I64':
      return Float32Array.from(new BigInt64Array(buf, 0, n), Number);
    case 'U64':
      return Float32Array.from(new BigUint64Array(buf, 0, n), Number);
    case 'I32':
      return Float32Array.from(new Int32Array(buf, 0, n));
    case 'U32':
      return Float32Array.from(new Uint32Array(buf, 0, n));
    case 'I16':
      return Float32Array.from(new Int16Array(buf, 0, n));
    case 'U16':
      return Float32Array.from(new Uint16Array(buf, 0, n));
    case 'I8':
      return Float32Array.from(new Int8Array(buf, 0, n));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(new Uint8Array(buf, 0, n));
  }
}

/** A float tensor from float32 values, stored as F32 (default), F16 or BF16. */
export function float32ToSafeTensor(
  values: Float32Array,
  shape: readonly number[],
  dtype: 'F32' | 'F16' | 'BF16' = 'F32',
): SafeTensor {
  if (values.length !== size(shape))
    throw new Error(`${values.length} values for shape [${shape.join(', ')}]`);
  let data: Uint8Array;
  if (dtype === 'F32')
    data = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  else {
    const bits = Uint16Array.from(values, dtype === 'F16' ? float32ToFloat16Bits : float32ToBfloat16Bits);
    data = new Uint8Array(bits.buffer);
  }
  return { dtype, shape: [...shape], data };
}
