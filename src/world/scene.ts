/**
 * The EmojiWorld scene spec: a JSON document from which the renderer derives the image, the masks and the
 * caption, with nothing else as input. Also: validation with clear messages, pixel placement, and the seeded
 * scene sampler.
 */
import { readFile } from 'node:fs/promises';

import { z } from 'zod';

import { UserError } from '../util/errors.js';
import { assertReadableFile } from '../util/files.js';
import { BACKGROUND_NAMES, getBackground, isBackgroundName } from './backgrounds.js';
import { CLASS_NAMES, STYLES, classColours, getClass, isClassName, type Style } from './catalog.js';
import { Rng } from './prng.js';

export const SCENE_VERSION = 1;
export const MIN_IMAGE_SIZE = 64;
export const MAX_IMAGE_SIZE = 256;
export const DEFAULT_IMAGE_SIZE = 128;
export const MAX_OBJECTS = 3;
export const MIN_SCALE = 0.05;
export const MAX_SCALE = 1;
const UINT32_MAX = 2 ** 32 - 1;

export interface SceneObject {
  /** Class name (see catalog.ts), e.g. "cat", "teddy bear". */
  class: string;
  style: Style;
  /** Centre, as a fraction of the image width (0 = left edge). */
  x: number;
  /** Centre, as a fraction of the image height (0 = top edge). */
  y: number;
  /** Sprite side as a fraction of min(width, height). */
  scale: number;
  /** Mirror the artwork left–right. */
  flipX: boolean;
  /** A colour word from the class's colours; absent = the artwork's own colour. */
  colour?: string;
}

export interface Scene {
  version: 1;
  /** Seeds the choices that are not geometry (caption template). */
  seed: number;
  width: number;
  height: number;
  background: { name: string; seed: number };
  /** Back to front: later objects are drawn over earlier ones. */
  objects: SceneObject[];
}

const uint32 = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int({ error: `${what} must be an integer` })
    .min(0, { error: `${what} must be from 0 to ${UINT32_MAX}` })
    .max(UINT32_MAX, { error: `${what} must be from 0 to ${UINT32_MAX}` });

const unit = (what: string) =>
  z
    .number({ error: `${what} must be a number from 0 to 1` })
    .min(0, { error: `${what} must be from 0 to 1` })
    .max(1, { error: `${what} must be from 0 to 1` });

const imageSide = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int({ error: `${what} must be an integer` })
    .min(MIN_IMAGE_SIZE, { error: `${what} must be from ${MIN_IMAGE_SIZE} to ${MAX_IMAGE_SIZE} pixels` })
    .max(MAX_IMAGE_SIZE, { error: `${what} must be from ${MIN_IMAGE_SIZE} to ${MAX_IMAGE_SIZE} pixels` })
    .default(DEFAULT_IMAGE_SIZE);

const objectSchema = z.strictObject({
  class: z.string({ error: 'class must be a string (a class name such as "cat")' }),
  style: z
    .enum(STYLES, { error: `style must be one of ${STYLES.map((s) => `"${s}"`).join(', ')}` })
    .default('flat'),
  x: unit('x'),
  y: unit('y'),
  scale: z
    .number({ error: 'scale must be a number' })
    .min(MIN_SCALE, {
      error: `scale must be from ${MIN_SCALE} to ${MAX_SCALE} (a fraction of the image size)`,
    })
    .max(MAX_SCALE, {
      error: `scale must be from ${MIN_SCALE} to ${MAX_SCALE} (a fraction of the image size)`,
    }),
  flipX: z.boolean({ error: 'flipX must be true or false' }).default(false),
  colour: z.string({ error: 'colour must be a string' }).optional(),
});

/** The zod schema of a scene (input: defaults may be omitted; output: {@link Scene}). */
export const sceneSchema = z
  .strictObject({
    version: z.literal(SCENE_VERSION, {
      error: (issue) =>
        issue.input === undefined
          ? `version is missing (this EditKit reads version ${SCENE_VERSION} scenes)`
          : `unsupported scene version ${JSON.stringify(issue.input)} (this EditKit reads version ${SCENE_VERSION})`,
    }),
    seed: uint32('seed').default(0),
    width: imageSide('width'),
    height: imageSide('height'),
    background: z.strictObject(
      {
        name: z.string({ error: 'background.name must be a string' }),
        seed: uint32('background.seed').default(0),
      },
      { error: 'background must be an object { name, seed }' },
    ),
    objects: z
      .array(objectSchema, { error: 'objects must be a list' })
      .max(MAX_OBJECTS, { error: `a scene has at most ${MAX_OBJECTS} objects` }),
  })
  .superRefine((scene, ctx) => {
    if (!isBackgroundName(scene.background.name)) {
      ctx.addIssue({
        code: 'custom',
        path: ['background', 'name'],
        message: `unknown background ${JSON.stringify(scene.background.name)}${didYouMean(scene.background.name, BACKGROUND_NAMES)}; known: ${BACKGROUND_NAMES.join(', ')}`,
      });
    }
    scene.objects.forEach((object, i) => {
      if (!isClassName(object.class)) {
        ctx.addIssue({
          code: 'custom',
          path: ['objects', i, 'class'],
          message: `unknown class ${JSON.stringify(object.class)}${didYouMean(object.class, CLASS_NAMES)} (run 'editkit world list' for all classes)`,
        });
        return;
      }
      const c = getClass(object.class);
      if (!c.styles.includes(object.style)) {
        ctx.addIssue({
          code: 'custom',
          path: ['objects', i, 'style'],
          message: `class "${object.class}" has no "${object.style}" artwork (it has ${c.styles.map((s) => `"${s}"`).join(', ')})`,
        });
      }
      if (object.colour !== undefined) {
        const colours = classColours(object.class);
        if (!colours.includes(object.colour)) {
          ctx.addIssue({
            code: 'custom',
            path: ['objects', i, 'colour'],
            message:
              colours.length === 0
                ? `class "${object.class}" comes in one colour only; remove "colour"`
                : `class "${object.class}" has no colour ${JSON.stringify(object.colour)} (it has ${colours.join(', ')})`,
          });
        }
      }
    });
  });

/**
 * Validate `input` (parsed JSON) as a scene, filling defaults. Throws a UserError listing every problem with
 * its JSON path, e.g. `scene 'a.json' is invalid: objects[0].class: unknown class "catt" (did you mean "cat"?)`.
 */
export function parseScene(input: unknown, label = 'scene'): Scene {
  const result = sceneSchema.safeParse(input);
  if (result.success) return normaliseScene(result.data);
  const problems = result.error.issues.map((issue) => {
    const path = formatPath(issue.path);
    return path === '' ? issue.message : `${path}: ${issue.message}`;
  });
  throw new UserError(`${label} is invalid: ${problems.join('; ')}`);
}

/** Read and validate a scene JSON file; every failure is a UserError naming the file. */
export async function readSceneFile(path: string): Promise<Scene> {
  await assertReadableFile(path, 'scene file');
  const text = await readFile(path, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UserError(`scene file '${path}' is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseScene(json, `scene file '${path}'`);
}

/** JSON text of a scene, keys in a fixed order, so equal scenes serialise to equal bytes. */
export function sceneToJson(scene: Scene): string {
  return `${JSON.stringify(normaliseScene(scene), null, 2)}\n`;
}

/** A copy with keys in canonical order and the default colour written as absent. */
export function normaliseScene(scene: Scene): Scene {
  return {
    version: SCENE_VERSION,
    seed: scene.seed,
    width: scene.width,
    height: scene.height,
    background: { name: scene.background.name, seed: scene.background.seed },
    objects: scene.objects.map((o) => {
      const out: SceneObject = {
        class: o.class,
        style: o.style,
        x: o.x,
        y: o.y,
        scale: o.scale,
        flipX: o.flipX,
      };
      if (o.colour !== undefined && o.colour !== getClass(o.class).defaultColour) out.colour = o.colour;
      return out;
    }),
  };
}

/** Where a sprite lands, in pixels: its top-left corner (may be off-image) and side. */
export interface Placement {
  left: number;
  top: number;
  size: number;
}

/**
 * The pixel placement of `object` in `scene`. Sizes and corners are rounded to whole pixels (sprites are never
 * resampled at sub-pixel offsets), so this is the one place that turns the fractional spec into pixels.
 */
export function placement(
  scene: Pick<Scene, 'width' | 'height'>,
  object: Pick<SceneObject, 'x' | 'y' | 'scale'>,
): Placement {
  const size = Math.max(4, Math.min(512, Math.round(object.scale * Math.min(scene.width, scene.height))));
  return {
    left: Math.round(object.x * scene.width - size / 2),
    top: Math.round(object.y * scene.height - size / 2),
    size,
  };
}

/** Fraction of the smaller of two objects' boxes (in normalised units) that the boxes share. */
export function boxOverlap(
  a: Pick<SceneObject, 'x' | 'y' | 'scale'>,
  b: Pick<SceneObject, 'x' | 'y' | 'scale'>,
): number {
  const ix = Math.max(
    0,
    Math.min(a.x + a.scale / 2, b.x + b.scale / 2) - Math.max(a.x - a.scale / 2, b.x - b.scale / 2),
  );
  const iy = Math.max(
    0,
    Math.min(a.y + a.scale / 2, b.y + b.scale / 2) - Math.max(a.y - a.scale / 2, b.y - b.scale / 2),
  );
  const smaller = Math.min(a.scale, b.scale) ** 2;
  return smaller > 0 ? (ix * iy) / smaller : 0;
}

export interface SampleSceneOptions {
  /** Image size in pixels (default 128 × 128). */
  width?: number;
  height?: number;
  /** Number of objects, drawn uniformly from [minObjects, maxObjects] (default 1–3; 0 allowed). */
  minObjects?: number;
  maxObjects?: number;
  /** Restrict classes (default all). */
  classes?: readonly string[];
  /** Restrict backgrounds (default all; textures are drawn 70 % of the time, plain colours 30 %). */
  backgrounds?: readonly string[];
  /** Probability that an object uses the "colour" (3D) artwork where its class has it (default 0.3). */
  colourStyleProbability?: number;
  /** Probability that an object with colour options takes a non-default colour (default 0.3). */
  colourVariantProbability?: number;
  /** Probability that an object repeats an earlier object's class ("two cats"; default 0.15). */
  repeatClassProbability?: number;
  /** Largest allowed share of the smaller object's box covered by another (default 0.12). */
  maxOverlap?: number;
  /** Sprite-side range per object count, as fractions of the image side (default: SCALE_RANGES). */
  scaleRanges?: Readonly<Record<number, readonly [number, number]>>;
}

/** Scale range by object count: fewer objects are drawn larger. */
const SCALE_RANGES: Readonly<Record<number, readonly [number, number]>> = {
  1: [0.35, 0.6],
  2: [0.27, 0.45],
  3: [0.22, 0.36],
};

/** Round to 4 decimals so sampled scenes are short and readable as JSON (and still exact to render). */
export function quantise(v: number): number {
  return Math.round(v * 10_000) / 10_000;
}

/** A random scene, a pure function of `seed` and `options`. */
export function sampleScene(seed: number, options: SampleSceneOptions = {}): Scene {
  const width = options.width ?? DEFAULT_IMAGE_SIZE;
  const height = options.height ?? DEFAULT_IMAGE_SIZE;
  const minObjects = options.minObjects ?? 1;
  const maxObjects = options.maxObjects ?? MAX_OBJECTS;
  if (!(
    Number.isInteger(minObjects) &&
    Number.isInteger(maxObjects) &&
    minObjects >= 0 &&
    minObjects <= maxObjects &&
    maxObjects <= MAX_OBJECTS
  )) {
    throw new UserError(
      `object count range must satisfy 0 ≤ min ≤ max ≤ ${MAX_OBJECTS}, got ${minObjects}–${maxObjects}`,
    );
  }
  const classes = options.classes ?? CLASS_NAMES;
  for (const c of classes)
    if (!isClassName(c))
      throw new UserError(`unknown class ${JSON.stringify(c)}${didYouMean(c, CLASS_NAMES)}`);
  if (classes.length === 0) throw new UserError('no classes to sample from');
  const backgrounds = options.backgrounds ?? BACKGROUND_NAMES;
  for (const b of backgrounds) {
    if (!isBackgroundName(b))
      throw new UserError(`unknown background ${JSON.stringify(b)}${didYouMean(b, BACKGROUND_NAMES)}`);
  }
  if (backgrounds.length === 0) throw new UserError('no backgrounds to sample from');
  const pStyle = options.colourStyleProbability ?? 0.3;
  const pColour = options.colourVariantProbability ?? 0.3;
  const pRepeat = options.repeatClassProbability ?? 0.15;
  const maxOverlap = options.maxOverlap ?? 0.12;

  const rng = new Rng('scene', seed);
  const textures = backgrounds.filter((b) => getBackground(b).kind === 'texture');
  const plains = backgrounds.filter((b) => getBackground(b).kind === 'plain');
  const pool = textures.length > 0 && plains.length > 0 ? (rng.chance(0.7) ? textures : plains) : backgrounds;
  const background = { name: rng.pick(pool), seed: rng.uint32() };

  const count = rng.int(minObjects, maxObjects);
  const objects: SceneObject[] = [];
  for (let i = 0; i < count; i++) {
    const name = objects.length > 0 && rng.chance(pRepeat) ? rng.pick(objects).class : rng.pick(classes);
    const c = getClass(name);
    const style: Style = c.styles.includes('colour') && rng.chance(pStyle) ? 'colour' : 'flat';
    const colours = classColours(name);
    const colour = colours.length > 1 && rng.chance(pColour) ? rng.pick(colours.slice(1)) : undefined;
    const [lo, hi] = options.scaleRanges?.[count] ?? SCALE_RANGES[count];
    const spot = findSpot(rng, objects, rng.range(lo, hi), maxOverlap);
    const object: SceneObject = {
      class: name,
      style,
      x: spot.x,
      y: spot.y,
      scale: spot.scale,
      flipX: rng.chance(0.5),
    };
    if (colour !== undefined) object.colour = colour;
    objects.push(object);
  }
  return { version: SCENE_VERSION, seed: rng.uint32(), width, height, background, objects };
}

/**
 * A free spot for a box of side `scale` (shrunk if nothing fits), fully inside the image, overlapping each of
 * `others` by at most `maxOverlap`. Always terminates: after the last shrink the overlap check is dropped.
 */
export function findSpot(
  rng: Rng,
  others: readonly Pick<SceneObject, 'x' | 'y' | 'scale'>[],
  scale: number,
  maxOverlap: number,
): { x: number; y: number; scale: number } {
  let s = scale;
  for (let round = 0; round < 6; round++) {
    for (let attempt = 0; attempt < 40; attempt++) {
      const candidate = {
        x: quantise(rng.range(s / 2, 1 - s / 2)),
        y: quantise(rng.range(s / 2, 1 - s / 2)),
        scale: quantise(s),
      };
      if (others.every((o) => boxOverlap(o, candidate) <= maxOverlap)) return candidate;
    }
    s = Math.max(0.12, s * 0.85);
  }
  return {
    x: quantise(rng.range(s / 2, 1 - s / 2)),
    y: quantise(rng.range(s / 2, 1 - s / 2)),
    scale: quantise(s),
  };
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path)
    out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out;
}

function didYouMean(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3))
    ? ` (did you mean "${best}"?)`
    : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}
