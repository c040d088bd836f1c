/**
 * Seeded randomness and deterministic arithmetic for EmojiWorld.
 *
 * Everything a scene looks like must follow from its JSON alone, on every machine and Node version, so this
 * module avoids Math.random and the transcendental Math functions (sin, cos, exp, pow): ECMAScript leaves their
 * last bits to the engine. Only +, −, ×, ÷, floor and sqrt are used, which IEEE 754 fixes exactly.
 */

/** Mix a 32-bit value (the murmur3 finaliser): a cheap hash with full avalanche. */
export function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Hash a list of integers and strings into a 32-bit seed. Sub-streams are derived by name
 * (`hashSeed(seed, 'caption')`) so that adding a random draw to one part of the world never shifts the
 * numbers another part sees.
 */
export function hashSeed(...parts: readonly (number | string)[]): number {
  let h = 0x811c9dc5;
  const feed = (v: number): void => {
    h = mix32((h ^ v) + 0x9e3779b9);
  };
  for (const part of parts) {
    if (typeof part === 'number') {
      if (!Number.isSafeInteger(part)) throw new RangeError(`hashSeed: ${part} is not a safe integer`);
      feed(part >>> 0);
      feed(Math.floor(part / 2 ** 32) >>> 0);
    } else {
      feed(0x5f3759df ^ part.length);
      for (let i = 0; i < part.length; i++) feed(part.charCodeAt(i));
    }
  }
  return h >>> 0;
}

/** A small seeded generator (sfc32 seeded through {@link hashSeed}): fast, 32-bit, stable forever. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(...seed: readonly (number | string)[]) {
    this.a = hashSeed(1, ...seed);
    this.b = hashSeed(2, ...seed);
    this.c = hashSeed(3, ...seed);
    this.d = 1;
    // Warm-up so that nearby seeds give unrelated first outputs.
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.uint32() / 2 ** 32;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Rng.pick: empty list');
    return items[Math.floor(this.float() * items.length)];
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

/**
 * sin(2π·t) for any real t, by a fixed polynomial (max error ≈ 1e-3, plenty for textures), so wave patterns do
 * not depend on the engine's Math.sin.
 */
export function sinTurns(t: number): number {
  let x = t - Math.floor(t); // [0, 1)
  // Fold to [-0.25, 0.25] turns, where the odd polynomial is accurate.
  if (x > 0.75) x -= 1;
  else if (x > 0.25) x = 0.5 - x;
  const y = x * 2 * Math.PI;
  const y2 = y * y;
  return y * (1 - (y2 / 6) * (1 - (y2 / 20) * (1 - (y2 / 42) * (1 - y2 / 72))));
}

/** A lattice value in [0, 1) for integer coordinates, from a seed: the basis of value noise. */
export function latticeValue(ix: number, iy: number, seed: number): number {
  return mix32(Math.imul(ix | 0, 0x27d4eb2d) ^ mix32(Math.imul(iy | 0, 0x165667b1) ^ seed)) / 2 ** 32;
}

/** Smooth value noise in [0, 1) at real coordinates (cubic Hermite interpolation of lattice values). */
export function valueNoise(x: number, y: number, seed: number): number {
  const ix = Math.floor(x);
  const iy = Math.floor(y);
  const fx = x - ix;
  const fy = y - iy;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const v00 = latticeValue(ix, iy, seed);
  const v10 = latticeValue(ix + 1, iy, seed);
  const v01 = latticeValue(ix, iy + 1, seed);
  const v11 = latticeValue(ix + 1, iy + 1, seed);
  const top = v00 + (v10 - v00) * sx;
  const bottom = v01 + (v11 - v01) * sx;
  return top + (bottom - top) * sy;
}

/** Fractal sum of `octaves` value-noise layers, each at twice the frequency and `gain` times the amplitude; in [0, 1). */
export function fbm(x: number, y: number, seed: number, octaves = 4, gain = 0.5): number {
  let sum = 0;
  let norm = 0;
  let amp = 1;
  let f = 1;
  for (let o = 0; o < octaves; o++) {
    sum += amp * valueNoise(x * f, y * f, (seed + Math.imul(o, 0x9e3779b1)) >>> 0);
    norm += amp;
    amp *= gain;
    f *= 2;
  }
  return sum / norm;
}
