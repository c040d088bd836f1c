import { NDArray, shapeSize } from './ndarray.js';

/**
 * A seeded random generator (the `generator` of diffusers' pipelines).
 *
 * Uniforms come from xoshiro128** seeded through splitmix32, normals from Box–Muller. The stream is
 * stable across platforms and versions of EditKit, so a seed reproduces an image; it is not torch's stream, so
 * for number-for-number comparison with another implementation pass explicit latents/noise instead.
 */
export class Generator {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spareNormal: number | undefined;

  constructor(seed: number) {
    this.manualSeed(seed);
  }

  manualSeed(seed: number): this {
    if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
    let state = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    this.spareNormal = undefined;
    return this;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  random(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result / 2 ** 32;
  }

  /** Standard normal sample. */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const v = this.spareNormal;
      this.spareNormal = undefined;
      return v;
    }
    // 1 - u keeps the log argument in (0, 1].
    const u1 = 1 - this.random();
    const u2 = this.random();
    const radius = Math.sqrt(-2 * Math.log(u1));
    this.spareNormal = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  }

  randn(shape: readonly number[]): NDArray {
    const out = new Float32Array(shapeSize(shape));
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return new NDArray(out, shape);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
