/**
 * A dense float32 array with a shape, in row-major (C) order.
 *
 * Pipelines and schedulers do their latent arithmetic on the CPU in float32, the way diffusers does on
 * tensors; this is the one container they share. ONNX Runtime tensors are made from it only at a session's
 * boundary (see runtime/session.ts), so that dtype conversion (fp16, int64) lives in one place.
 */
export class NDArray {
  readonly data: Float32Array;
  readonly shape: readonly number[];

  constructor(data: Float32Array, shape: readonly number[]) {
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new Error(
        `NDArray: data has ${data.length} elements but shape [${shape.join(', ')}] needs ${size}`,
      );
    }
    this.data = data;
    this.shape = [...shape];
  }

  static zeros(shape: readonly number[]): NDArray {
    return new NDArray(new Float32Array(shapeSize(shape)), shape);
  }

  static full(shape: readonly number[], value: number): NDArray {
    return new NDArray(new Float32Array(shapeSize(shape)).fill(value), shape);
  }

  get size(): number {
    return this.data.length;
  }

  clone(): NDArray {
    return new NDArray(this.data.slice(), this.shape);
  }

  reshape(shape: readonly number[]): NDArray {
    return new NDArray(this.data, shape);
  }

  /** Element-wise map; `other` must have the same size (no broadcasting: shapes are explicit in pipelines). */
  map(fn: (value: number, index: number) => number): NDArray {
    const out = new Float32Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = fn(this.data[i], i);
    return new NDArray(out, this.shape);
  }

  add(other: NDArray): NDArray {
    assertSameSize(this, other, 'add');
    return this.map((v, i) => v + other.data[i]);
  }

  sub(other: NDArray): NDArray {
    assertSameSize(this, other, 'sub');
    return this.map((v, i) => v - other.data[i]);
  }

  mul(other: NDArray): NDArray {
    assertSameSize(this, other, 'mul');
    return this.map((v, i) => v * other.data[i]);
  }

  scale(factor: number): NDArray {
    return this.map((v) => v * factor);
  }

  /** a·this + b·other, the shape of nearly every scheduler update. */
  axpby(a: number, other: NDArray, b: number): NDArray {
    assertSameSize(this, other, 'axpby');
    return this.map((v, i) => a * v + b * other.data[i]);
  }

  /** Split along the first axis into `parts` equal pieces (e.g. the CFG batch [uncond, cond]). */
  chunk(parts: number): NDArray[] {
    const lead = this.shape[0];
    if (lead % parts !== 0)
      throw new Error(`NDArray.chunk: axis 0 of size ${lead} is not divisible by ${parts}`);
    const step = this.data.length / parts;
    const shape = [lead / parts, ...this.shape.slice(1)];
    return Array.from(
      { length: parts },
      (_, k) => new NDArray(this.data.slice(k * step, (k + 1) * step), shape),
    );
  }

  /** Concatenate along the first axis. */
  static concat(arrays: readonly NDArray[]): NDArray {
    if (arrays.length === 0) throw new Error('NDArray.concat: nothing to concatenate');
    const rest = arrays[0].shape.slice(1);
    for (const a of arrays) {
      if (a.shape.slice(1).join(',') !== rest.join(',')) {
        throw new Error(
          `NDArray.concat: trailing shapes differ ([${a.shape.join(', ')}] vs [${arrays[0].shape.join(', ')}])`,
        );
      }
    }
    const total = arrays.reduce((n, a) => n + a.data.length, 0);
    const out = new Float32Array(total);
    let offset = 0;
    for (const a of arrays) {
      out.set(a.data, offset);
      offset += a.data.length;
    }
    return new NDArray(out, [arrays.reduce((n, a) => n + a.shape[0], 0), ...rest]);
  }

  /** Concatenate along axis 1 (channels), as the 9-channel inpainting UNet input needs. */
  static concatChannels(arrays: readonly NDArray[]): NDArray {
    const [batch, , ...spatial] = arrays[0].shape;
    const plane = spatial.reduce((a, b) => a * b, 1);
    const channels = arrays.reduce((n, a) => n + a.shape[1], 0);
    for (const a of arrays) {
      if (a.shape[0] !== batch || a.shape.slice(2).join(',') !== spatial.join(',')) {
        throw new Error('NDArray.concatChannels: batch and spatial sizes must match');
      }
    }
    const out = new Float32Array(batch * channels * plane);
    for (let b = 0; b < batch; b++) {
      let c0 = 0;
      for (const a of arrays) {
        const ca = a.shape[1];
        out.set(a.data.subarray(b * ca * plane, (b + 1) * ca * plane), (b * channels + c0) * plane);
        c0 += ca;
      }
    }
    return new NDArray(out, [batch, channels, ...spatial]);
  }

  maxAbsDiff(other: NDArray): number {
    assertSameSize(this, other, 'maxAbsDiff');
    let m = 0;
    for (let i = 0; i < this.data.length; i++) m = Math.max(m, Math.abs(this.data[i] - other.data[i]));
    return m;
  }
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new Error(`invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

function assertSameSize(a: NDArray, b: NDArray, op: string): void {
  if (a.data.length !== b.data.length) {
    throw new Error(`NDArray.${op}: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  }
}
