/**
 * NumPy `.npy` files, the exchange format for latents, noise and parity fixtures with the PyTorch reference.
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0, C order, little-endian (or byte-order-free) dtypes:
 * `<f4`, and converted to float32: `<f8`, `<f2`, `<i8`, `<i4`, `<i2`, `|i1`, `<u4`, `<u2`, `|u1`, `|b1`
 * (int64 values beyond 2^53 lose precision, as they would in `astype(np.float32)`). Fortran order, big-endian
 * data, structured or object dtypes are refused with a UserError: they never come out of the reference, and
 * silently transposing or byte-swapping would hide a mistake.
 *
 * Writing always produces version 1.0 `<f4` C-order files, with the header padded so the data starts at a
 * multiple of 64 bytes as numpy ≥ 1.23 does (readers may map it aligned).
 */
import { readFile } from 'node:fs/promises';

import { NDArray } from '../runtime/ndarray.js';
import { UserError } from './errors.js';
import { assertReadableFile, ensureParentDir, writeFileAtomic } from './files.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ALIGN = 64;

type Reader = (view: DataView, offset: number) => number;

const DTYPES: Record<string, { size: number; read: Reader }> = {
  f4: { size: 4, read: (v, o) => v.getFloat32(o, true) },
  f8: { size: 8, read: (v, o) => v.getFloat64(o, true) },
  f2: { size: 2, read: (v, o) => halfToFloat(v.getUint16(o, true)) },
  i8: { size: 8, read: (v, o) => Number(v.getBigInt64(o, true)) },
  i4: { size: 4, read: (v, o) => v.getInt32(o, true) },
  i2: { size: 2, read: (v, o) => v.getInt16(o, true) },
  i1: { size: 1, read: (v, o) => v.getInt8(o) },
  u4: { size: 4, read: (v, o) => v.getUint32(o, true) },
  u2: { size: 2, read: (v, o) => v.getUint16(o, true) },
  u1: { size: 1, read: (v, o) => v.getUint8(o) },
  b1: { size: 1, read: (v, o) => (v.getUint8(o) === 0 ? 0 : 1) },
};

/** Read a `.npy` file into a float32 NDArray. */
export async function readNpy(path: string): Promise<NDArray> {
  await assertReadableFile(path, 'array file');
  return parseNpy(await readFile(path), path);
}

/** Parse `.npy` bytes; `source` names them in error messages. */
export function parseNpy(buf: Uint8Array, source = '<buffer>'): NDArray {
  const fail = (why: string): never => {
    throw new UserError(`array file '${source}' ${why}`);
  };
  if (buf.length < 10 || MAGIC.some((byte, i) => buf[i] !== byte))
    fail('is not a NumPy .npy file (bad magic)');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const major = buf[6];
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail('is truncated (incomplete header)');
    headerLength = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return fail(`has .npy format version ${major}.${buf[7]}, only 1.0, 2.0 and 3.0 are supported`);
  }
  const dataStart = headerStart + headerLength;
  if (buf.length < dataStart) fail('is truncated (incomplete header)');
  // Version 3.0 exists only to allow UTF-8 in the header (structured field names); 1.0/2.0 are latin-1.
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    buf.subarray(headerStart, dataStart),
  );
  const { descr, fortranOrder, shape } = parseHeader(header, fail);

  if (fortranOrder) fail('is stored in Fortran order; save it with np.ascontiguousarray(...) first');
  const match = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  if (match === null) return fail(`has dtype ${descr}, which is not a plain numeric dtype`);
  const [, order, kind, bytes] = match;
  const dtype = DTYPES[kind + bytes];
  if (dtype === undefined)
    return fail(`has unsupported dtype ${descr} (supported: float16/32/64, (u)int8–64, bool)`);
  // '=' (native) never appears in files numpy writes; treating it as little-endian would be a guess.
  if (order === '>' || (order === '=' && dtype.size > 1) || (order === '|' && dtype.size > 1)) {
    fail(`has byte order '${order}' (dtype ${descr}); only little-endian data is supported`);
  }

  const count = shape.reduce((a, b) => a * b, 1);
  const byteLength = count * dtype.size;
  if (buf.length - dataStart < byteLength) {
    fail(
      `is truncated: shape (${shape.join(', ')}) needs ${byteLength} data bytes, found ${buf.length - dataStart}`,
    );
  }
  const out = new Float32Array(count);
  if (kind + bytes === 'f4' && LITTLE_ENDIAN_HOST) {
    // Copy, rather than view, because the data offset within Node's pooled buffer need not be 4-aligned.
    new Uint8Array(out.buffer).set(buf.subarray(dataStart, dataStart + byteLength));
  } else {
    for (let i = 0; i < count; i++) out[i] = dtype.read(view, dataStart + i * dtype.size);
  }
  return new NDArray(out, shape);
}

/** Encode as a version 1.0 `<f4` C-order `.npy`. */
export function encodeNpy(arr: NDArray): Uint8Array {
  const shape = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1; // + the terminating newline
  header += ' '.repeat((ALIGN - (unpadded % ALIGN)) % ALIGN) + '\n';
  if (header.length > 0xffff)
    throw new Error(`encodeNpy: header too long for format 1.0 (shape has ${arr.shape.length} dims)`);
  const out = new Uint8Array(10 + header.length + arr.data.length * 4);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const dataStart = 10 + header.length;
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength), dataStart);
  } else {
    arr.data.forEach((v, i) => view.setFloat32(dataStart + 4 * i, v, true));
  }
  return out;
}

/** Write `arr` as `.npy` to `path` atomically, creating the parent directory. */
export async function writeNpy(path: string, arr: NDArray): Promise<void> {
  const bytes = encodeNpy(arr);
  await ensureParentDir(path);
  await writeFileAtomic(path, bytes);
}

// ---------------------------------------------------------------------------------------------------------------

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The header is a Python dict literal with exactly the keys descr, fortran_order and shape (numpy's
 * `_read_array_header` insists on that too). A small targeted parser, not an evaluator of Python literals.
 */
function parseHeader(
  header: string,
  fail: (why: string) => never,
): { descr: string; fortranOrder: boolean; shape: number[] } {
  const text = header.trim();
  if (!text.startsWith('{') || !text.endsWith('}')) fail('has a malformed header (not a dict)');
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)\b/.exec(text);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (descr === null) {
    const structured = /['"]descr['"]\s*:\s*\[/.test(text);
    return fail(
      structured ? 'has a structured dtype, which is not supported' : "has a malformed header (no 'descr')",
    );
  }
  if (fortran === null) return fail("has a malformed header (no 'fortran_order')");
  if (shape === null) return fail("has a malformed header (no 'shape')");
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => (/^\d+L?$/.test(s) ? Number.parseInt(s, 10) : Number.NaN));
  if (dims.some((d) => !Number.isSafeInteger(d))) fail(`has a malformed shape (${shape[1]})`);
  return { descr: descr[1], fortranOrder: fortran[1] === 'True', shape: dims };
}

/** IEEE 754 binary16 bits to a number (exact: every half is a float32). */
function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
