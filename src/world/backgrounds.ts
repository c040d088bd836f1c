/**
 * Procedural backgrounds, one generator per named background, with seeded variation of texture and lighting.
 *
 * Textures are defined in normalised image coordinates (u, v in [0, 1)), so one background name and seed gives
 * the same picture at 64, 128 or 256 px, only sharper; per-pixel grain is the exception (it is meant to be at
 * pixel scale). Lighting varies per seed: overall brightness, colour temperature (red/blue balance) and a
 * linear brightness gradient in a random direction. Only IEEE-exact arithmetic is used (see prng.ts), so a
 * background is byte-identical everywhere.
 */
import { Rng, fbm, latticeValue, sinTurns, valueNoise } from './prng.js';

type Rgb = readonly [number, number, number];

export interface BackgroundInfo {
  name: string;
  kind: 'texture' | 'plain';
  /** Where objects are, in a caption: "on the grass", "in the sky", "on a plain blue background". */
  phrase: string;
  /** What the background becomes, in an instruction: "change the background to {noun}". */
  noun: string;
  /** The picture with no objects, in a caption: "a photo of {standalone}". */
  standalone: string;
}

const TEXTURES: readonly BackgroundInfo[] = [
  { name: 'grass', kind: 'texture', phrase: 'on the grass', noun: 'grass', standalone: 'grass' },
  { name: 'sand', kind: 'texture', phrase: 'on the sand', noun: 'sand', standalone: 'sand' },
  { name: 'snow', kind: 'texture', phrase: 'in the snow', noun: 'snow', standalone: 'snow' },
  { name: 'water', kind: 'texture', phrase: 'on the water', noun: 'water', standalone: 'water' },
  { name: 'sky', kind: 'texture', phrase: 'in the sky', noun: 'the sky', standalone: 'the sky' },
  {
    name: 'wooden table',
    kind: 'texture',
    phrase: 'on a wooden table',
    noun: 'a wooden table',
    standalone: 'a wooden table',
  },
  { name: 'road', kind: 'texture', phrase: 'on the road', noun: 'a road', standalone: 'a road' },
  {
    name: 'brick wall',
    kind: 'texture',
    phrase: 'in front of a brick wall',
    noun: 'a brick wall',
    standalone: 'a brick wall',
  },
];

const PLAIN_COLOURS: Readonly<Record<string, Rgb>> = {
  red: [0.84, 0.2, 0.18],
  orange: [0.95, 0.55, 0.15],
  yellow: [0.97, 0.84, 0.26],
  green: [0.3, 0.68, 0.32],
  blue: [0.25, 0.5, 0.88],
  purple: [0.55, 0.36, 0.78],
  pink: [0.96, 0.62, 0.76],
  white: [0.96, 0.96, 0.95],
  grey: [0.58, 0.58, 0.6],
  black: [0.1, 0.1, 0.11],
};

const PLAINS: readonly BackgroundInfo[] = Object.keys(PLAIN_COLOURS).map((colour) => ({
  name: `plain ${colour}`,
  kind: 'plain' as const,
  phrase: `on a plain ${colour} background`,
  noun: `plain ${colour}`,
  standalone: `a plain ${colour} background`,
}));

const ALL: readonly BackgroundInfo[] = [...TEXTURES, ...PLAINS];
const BY_NAME = new Map(ALL.map((b) => [b.name, b]));

/** All background names: the textures, then "plain <colour>". */
export const BACKGROUND_NAMES: readonly string[] = Object.freeze(ALL.map((b) => b.name));

export function isBackgroundName(name: string): boolean {
  return BY_NAME.has(name);
}

export function getBackground(name: string): BackgroundInfo {
  const info = BY_NAME.get(name);
  if (info === undefined) throw new RangeError(`unknown EmojiWorld background '${name}'`);
  return info;
}

type Shader = (u: number, v: number, x: number, y: number) => Rgb;

/** Render background `name` with `seed` as interleaved 8-bit RGB, `width × height`. */
export function renderBackground(name: string, seed: number, width: number, height: number): Uint8Array {
  const info = getBackground(name);
  const rng = new Rng('background', name, seed);
  const shader =
    info.kind === 'plain'
      ? plainShader(PLAIN_COLOURS[name.slice('plain '.length)], rng)
      : textureShader(name, rng);

  // Lighting, drawn after the texture parameters so a texture tweak never changes another seed's lighting.
  const light = new Rng('lighting', seed);
  const plain = info.kind === 'plain';
  const brightness = plain ? light.range(0.95, 1.04) : light.range(0.86, 1.08);
  const temperature = light.range(-1, 1) * (plain ? 0.02 : 0.06);
  const gradient = plain ? light.range(0, 0.08) : light.range(0, 0.2);
  let gx = light.range(-1, 1);
  let gy = light.range(-1, 1);
  const norm = Math.sqrt(gx * gx + gy * gy) || 1;
  gx /= norm;
  gy /= norm;

  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const v = (y + 0.5) / height;
    for (let x = 0; x < width; x++) {
      const u = (x + 0.5) / width;
      const [r, g, b] = shader(u, v, x, y);
      const lit = brightness * (1 + gradient * ((u - 0.5) * gx + (v - 0.5) * gy) * 1.4);
      const o = 3 * (y * width + x);
      out[o] = toByte(r * lit * (1 + temperature));
      out[o + 1] = toByte(g * lit);
      out[o + 2] = toByte(b * lit * (1 - temperature));
    }
  }
  return out;
}

function toByte(x: number): number {
  return x <= 0 ? 0 : x >= 1 ? 255 : Math.round(x * 255);
}

function lerp3(a: Rgb, b: Rgb, t: number): Rgb {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

function scale3(a: Rgb, k: number): Rgb {
  return [a[0] * k, a[1] * k, a[2] * k];
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

/** Seeded jitter of a palette colour, so two seeds of one background differ in hue as well as pattern. */
function jitter(c: Rgb, rng: Rng, amount: number): Rgb {
  return [
    c[0] * (1 + rng.range(-amount, amount)),
    c[1] * (1 + rng.range(-amount, amount)),
    c[2] * (1 + rng.range(-amount, amount)),
  ];
}

function plainShader(colour: Rgb, rng: Rng): Shader {
  const c = jitter(colour, rng, 0.04);
  const s = rng.uint32();
  // A barely visible large-scale mottling: real "plain" backdrops are never perfectly flat, and perfectly
  // flat regions make a model's job of telling background from object artificially easy.
  return (u, v) => scale3(c, 0.97 + 0.06 * fbm(u * 2, v * 2, s, 2));
}

function textureShader(name: string, rng: Rng): Shader {
  const s1 = rng.uint32();
  const s2 = rng.uint32();
  const s3 = rng.uint32();
  const grain = (x: number, y: number, amount: number): number => (latticeValue(x, y, s3) - 0.5) * amount;
  switch (name) {
    case 'grass': {
      const dark = jitter([0.2, 0.44, 0.12], rng, 0.08);
      const light = jitter([0.45, 0.7, 0.24], rng, 0.08);
      const dry: Rgb = [0.62, 0.62, 0.26];
      const dryness = rng.range(0, 0.35);
      const bladeFreq = rng.range(40, 70);
      return (u, v, x, y) => {
        const patches = fbm(u * 5, v * 5, s1, 4);
        // Noise stretched along v reads as upright blades.
        const blades = valueNoise(u * bladeFreq, v * bladeFreq * 0.18, s2);
        let c = lerp3(dark, light, Math.min(1, 0.55 * patches + 0.6 * blades));
        c = lerp3(c, dry, dryness * smoothstep(0.5, 0.8, fbm(u * 2, v * 2, s1 ^ 0x55, 2)));
        return scale3(c, 1 + grain(x, y, 0.06));
      };
    }
    case 'sand': {
      const base = jitter([0.87, 0.77, 0.56], rng, 0.05);
      const shade = jitter([0.74, 0.62, 0.42], rng, 0.05);
      const freq = rng.range(6, 12);
      let dx = rng.range(-0.5, 0.5);
      let dy = 1;
      const n = Math.sqrt(dx * dx + dy * dy);
      dx /= n;
      dy /= n;
      return (u, v, x, y) => {
        const ripple = sinTurns((u * dx + v * dy) * freq + 1.2 * fbm(u * 3, v * 3, s1, 3));
        const c = lerp3(base, shade, 0.35 * (ripple * 0.5 + 0.5) + 0.4 * fbm(u * 6, v * 6, s2, 3));
        return scale3(c, 1 + grain(x, y, 0.09));
      };
    }
    case 'snow': {
      const base = jitter([0.95, 0.97, 0.99], rng, 0.02);
      const shade = jitter([0.7, 0.78, 0.9], rng, 0.04);
      const lumps = rng.range(4, 7);
      return (u, v, x, y) => {
        // Embossed lumps (height difference along the light direction) read as snow, not as cloud.
        const e = 0.6 / lumps;
        const slope = fbm(u * lumps - e, v * lumps - e, s1, 4) - fbm(u * lumps + e, v * lumps + e, s1, 4);
        const c = lerp3(base, shade, smoothstep(-0.02, 0.2, -slope) * 0.75);
        const sparkle = latticeValue(x, y, s2) > 0.992 ? 0.06 : 0;
        return scale3(c, 1 + sparkle + grain(x, y, 0.025));
      };
    }
    case 'water': {
      const top = jitter([0.18, 0.5, 0.72], rng, 0.08);
      const bottom = jitter([0.07, 0.27, 0.5], rng, 0.08);
      const foam: Rgb = [0.8, 0.92, 0.98];
      const freq = rng.range(10, 18);
      const tilt = rng.range(-1.5, 1.5);
      return (u, v) => {
        const warp = fbm(u * 3, v * 3, s1, 3);
        const wave = sinTurns(v * freq + u * tilt + 1.5 * warp);
        let c = lerp3(top, bottom, v * 0.8 + 0.2 * fbm(u * 4, v * 4, s2, 2));
        c = lerp3(c, foam, 0.35 * smoothstep(0.75, 1, wave));
        return c;
      };
    }
    case 'sky': {
      const zenith = jitter([0.28, 0.52, 0.9], rng, 0.08);
      const horizon = jitter([0.72, 0.86, 0.98], rng, 0.04);
      const cloud: Rgb = [0.97, 0.97, 0.98];
      const cloudShade: Rgb = [0.8, 0.83, 0.88];
      const cover = rng.range(0.45, 0.72);
      return (u, v) => {
        let c = lerp3(zenith, horizon, v * v);
        const n = fbm(u * 2.5, v * 4, s1, 5);
        const amount = smoothstep(cover, cover + 0.15, n);
        const body = lerp3(cloud, cloudShade, smoothstep(0.3, 0.8, fbm(u * 6, v * 6, s2, 2)) * 0.6);
        c = lerp3(c, body, amount);
        return c;
      };
    }
    case 'wooden table': {
      const planks = rng.int(3, 5);
      const dark = jitter([0.42, 0.26, 0.13], rng, 0.1);
      const light = jitter([0.7, 0.49, 0.29], rng, 0.1);
      const seam: Rgb = [0.22, 0.13, 0.07];
      return (u, v, x, y) => {
        const row = Math.floor(v * planks);
        const tone = 0.85 + 0.3 * latticeValue(row, 7, s2);
        const inRow = v * planks - row;
        const joint = latticeValue(row, 11, s2);
        const ends = Math.abs(u - joint) * 1;
        const ring = sinTurns(inRow * 3 + u * 0.6 + 2.5 * fbm(u * 2, v * planks * 2, s1 + row, 3));
        const fibre = valueNoise(u * 40, v * planks * 6, s1 ^ 0x77);
        let c = lerp3(dark, light, 0.5 + 0.28 * ring + 0.2 * (fibre - 0.5));
        c = scale3(c, tone * (1 + grain(x, y, 0.04)));
        const rowPx = 1 / planks;
        const edge = Math.min(inRow, 1 - inRow) * rowPx;
        if (edge < 0.008 || ends < 0.004) c = lerp3(c, seam, 0.75);
        return c;
      };
    }
    case 'road': {
      const asphalt = jitter([0.3, 0.3, 0.32], rng, 0.08);
      const lineColour: Rgb = rng.chance(0.5) ? [0.93, 0.93, 0.9] : [0.95, 0.8, 0.25];
      const lineV = rng.range(0.3, 0.7);
      const dash = rng.range(2, 4);
      const phase = rng.float();
      return (u, v, x, y) => {
        let c = scale3(asphalt, 0.9 + 0.2 * fbm(u * 6, v * 6, s1, 3) + grain(x, y, 0.16));
        const onLine = Math.abs(v - lineV) < 0.018 && (u * dash + phase) % 1 < 0.55;
        if (onLine) c = lerp3(c, lineColour, 0.85 - 0.3 * valueNoise(u * 30, v * 30, s2));
        return c;
      };
    }
    case 'brick wall': {
      const rows = rng.int(5, 8);
      const brick = jitter([0.62, 0.26, 0.18], rng, 0.1);
      const mortar = jitter([0.76, 0.73, 0.68], rng, 0.04);
      const mortarWidth = rng.range(0.08, 0.14);
      return (u, v, x, y) => {
        const row = Math.floor(v * rows);
        const inRow = v * rows - row;
        const shifted = u * (rows / 2) + (row % 2 === 0 ? 0 : 0.5);
        const col = Math.floor(shifted);
        const inCol = shifted - col;
        const tone = 0.82 + 0.3 * latticeValue(col, row, s2);
        const dirt = 0.9 + 0.2 * fbm(u * 12, v * 12, s1, 3);
        const isMortar = inRow < mortarWidth || inCol < mortarWidth / 2;
        const c = isMortar ? mortar : scale3(brick, tone * dirt);
        return scale3(c, 1 + grain(x, y, 0.08));
      };
    }
    default:
      throw new RangeError(`no generator for background '${name}'`);
  }
}
