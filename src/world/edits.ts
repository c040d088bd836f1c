/**
 * Ground-truth edits: a scene and an edit task (+ seed) give the edited scene, the instruction, both captions,
 * the changed-region mask and, for move/resize, drag points. They cover EditEval's task types: object
 * replacement, addition, removal, background change, style change, colour change, and move/resize (drag).
 *
 * Changed-region mask: the footprints (alpha > 0, occlusion ignored) of the touched objects before and after
 * the edit, united, then dilated by {@link maskDilation} pixels (a square, i.e. Chebyshev, dilation). For a
 * background change it is every pixel not fully covered by objects (union alpha < 255), dilated the same way.
 * Every pixel that differs between the source and target renders lies inside this mask; the dilation adds a
 * margin so that methods which blur or downsample the mask (latent-space inpainting at 1/8 resolution) still
 * cover the anti-aliased edges.
 */
import { UserError } from '../util/errors.js';
import { BACKGROUND_NAMES, getBackground } from './backgrounds.js';
import {
  caption,
  definiteObjectList,
  descriptor,
  effectiveColour,
  locationPhrase,
  referTo,
  withArticle,
} from './caption.js';
import { CLASS_NAMES, classColours, getClass, type Style } from './catalog.js';
import { Rng } from './prng.js';
import { objectFootprint } from './render.js';
import {
  boxOverlap,
  findSpot,
  MAX_OBJECTS,
  normaliseScene,
  placement,
  quantise,
  type Scene,
  type SceneObject,
} from './scene.js';

export const EDIT_TASKS = [
  'replace',
  'add',
  'remove',
  'background',
  'style',
  'colour',
  'move',
  'resize',
] as const;
export type EditTask = (typeof EDIT_TASKS)[number];

/** A pixel position [x (column), y (row)], integer, in the image. */
export type Point = [number, number];

/** Drag ground truth: handle point k moves to target point k. */
export interface DragPoints {
  handles: Point[];
  targets: Point[];
}

/** An edit without pixels: what {@link planEdit} decides synchronously. */
export interface EditPlan {
  task: EditTask;
  seed: number;
  instruction: string;
  source: Scene;
  target: Scene;
  sourceCaption: string;
  targetCaption: string;
  /** Indices of the touched objects in the source and in the target (both empty for a background change). */
  changed: { source: number[]; target: number[] };
}

export interface EditResult extends EditPlan {
  /** Changed-region mask, `height × width` uint8, 255 inside (see the module comment). */
  mask: Uint8Array;
  width: number;
  height: number;
  /** The dilation radius used for {@link mask}, pixels. */
  dilation: number;
  /** For move and resize: where points on the object go. */
  drag?: DragPoints;
}

/** Mask dilation in pixels for an image size: 1 px at 64, 3 px at 128, 5 px at 256. */
export function maskDilation(width: number, height: number): number {
  return Math.max(1, Math.round(Math.min(width, height) / 48));
}

/** The tasks that can be applied to `scene` (e.g. no "add" with 3 objects, no "colour" without colour options). */
export function applicableTasks(scene: Scene): EditTask[] {
  return EDIT_TASKS.filter((task) => whyNot(scene, task) === undefined);
}

function whyNot(scene: Scene, task: EditTask): string | undefined {
  const n = scene.objects.length;
  switch (task) {
    case 'add':
      return n >= MAX_OBJECTS ? `the scene already has ${MAX_OBJECTS} objects` : undefined;
    case 'background':
      return undefined;
    case 'replace':
    case 'remove':
      return n === 0 ? 'the scene has no objects' : undefined;
    case 'style':
      return styleCandidates(scene).length === 0
        ? 'no object in the scene has both flat and colour artwork'
        : undefined;
    case 'colour':
      return colourCandidates(scene).length === 0
        ? 'no object in the scene comes in other colours'
        : undefined;
    case 'move':
      return moveCandidates(scene).length === 0
        ? 'no object is small enough to move inside the image'
        : undefined;
    case 'resize':
      return resizeCandidates(scene).length === 0 ? 'no object can be resized inside the image' : undefined;
  }
}

const styleCandidates = (scene: Scene): number[] =>
  indices(scene, (o) => getClass(o.class).styles.includes('colour'));
const colourCandidates = (scene: Scene): number[] => indices(scene, (o) => classColours(o.class).length > 1);
const moveCandidates = (scene: Scene): number[] => indices(scene, (o) => o.scale <= 0.7);
const resizeCandidates = (scene: Scene): number[] =>
  indices(scene, (o) => resizeFactors(scene, o).length > 0);

function indices(scene: Scene, keep: (o: SceneObject) => boolean): number[] {
  return scene.objects.flatMap((o, i) => (keep(o) ? [i] : []));
}

/**
 * Decide an edit: the target scene, instruction and captions. Pure and synchronous; a UserError says why a
 * task does not apply to this scene. `task: 'random'` picks one of {@link applicableTasks}.
 */
/**
 * The classes and backgrounds an edit may introduce (a replacement, an added object, a new background); default
 * the whole world. A world subset passes its own, so edits stay within what a model trained on it knows.
 */
export interface EditVocabulary {
  classes?: readonly string[];
  backgrounds?: readonly string[];
}

export function planEdit(
  scene: Scene,
  task: EditTask | 'random',
  seed: number,
  vocabulary: EditVocabulary = {},
): EditPlan {
  const source = normaliseScene(scene);
  const rng = new Rng('edit', task, seed, source.seed);
  let chosen: EditTask;
  if (task === 'random') {
    const tasks = applicableTasks(source);
    chosen = rng.pick(tasks); // 'background' always applies, so the list is never empty
  } else {
    if (!(EDIT_TASKS as readonly string[]).includes(task)) {
      throw new UserError(`unknown edit task ${JSON.stringify(task)}; use one of ${EDIT_TASKS.join(', ')}`);
    }
    chosen = task;
  }
  const reason = whyNot(source, chosen);
  if (reason !== undefined)
    throw new UserError(`edit task '${chosen}' does not apply to this scene: ${reason}`);
  const vocab = {
    classes: vocabulary.classes ?? CLASS_NAMES,
    backgrounds: vocabulary.backgrounds ?? BACKGROUND_NAMES,
  };
  const { target, instruction, changed } = PLANNERS[chosen](source, rng, vocab);
  const normalised = normaliseScene(target);
  return {
    task: chosen,
    seed,
    instruction,
    source,
    target: normalised,
    sourceCaption: caption(source),
    targetCaption: caption(normalised),
    changed,
  };
}

/** Plan an edit and compute its changed-region mask and drag points. */
export async function sampleEdit(
  scene: Scene,
  task: EditTask | 'random',
  seed: number,
  vocabulary: EditVocabulary = {},
): Promise<EditResult> {
  const plan = planEdit(scene, task, seed, vocabulary);
  const { width, height } = plan.source;
  const dilation = maskDilation(width, height);
  const region = new Uint8Array(width * height);
  if (plan.task === 'background') {
    const covered = await coverage(plan.source);
    for (let p = 0; p < region.length; p++) region[p] = covered[p] < 1 ? 1 : 0;
  } else {
    const footprints = await Promise.all([
      ...plan.changed.source.map((i) => objectFootprint(plan.source, i)),
      ...plan.changed.target.map((i) => objectFootprint(plan.target, i)),
    ]);
    for (const f of footprints) for (let p = 0; p < region.length; p++) if (f[p] > 0) region[p] = 1;
  }
  const mask = dilate(region, width, height, dilation);
  for (let p = 0; p < mask.length; p++) mask[p] = mask[p] ? 255 : 0;
  const result: EditResult = { ...plan, mask, width, height, dilation };
  if (plan.task === 'move' || plan.task === 'resize') result.drag = await dragPoints(plan);
  return result;
}

type Planner = (
  scene: Scene,
  rng: Rng,
  vocab: Required<EditVocabulary>,
) => { target: Scene; instruction: string; changed: EditPlan['changed'] };

const PLANNERS: Readonly<Record<EditTask, Planner>> = {
  replace(scene, rng, vocab) {
    const i = rng.int(0, scene.objects.length - 1);
    const old = scene.objects[i];
    const category = getClass(old.class).category;
    const sameCategory = vocab.classes.filter((c) => c !== old.class && getClass(c).category === category);
    const pool =
      sameCategory.length > 0 && rng.chance(0.5)
        ? sameCategory
        : vocab.classes.filter((c) => c !== old.class);
    const name = rng.pick(pool);
    const style: Style = getClass(name).styles.includes(old.style) ? old.style : 'flat';
    const objects = scene.objects.map((o, k) =>
      k === i ? { ...o, class: name, style, colour: undefined } : o,
    );
    const target = { ...scene, objects };
    const ref = referTo(scene, i);
    const replacement = withArticle(getClass(name).name);
    const instruction = fill(
      rng,
      [
        'replace {ref} with {new}',
        'turn {ref} into {new}',
        'change {ref} into {new}',
        'swap {ref} for {new}',
      ],
      {
        ref,
        new: replacement,
      },
    );
    return { target, instruction, changed: { source: [i], target: [i] } };
  },

  add(scene, rng, vocab) {
    const name = rng.pick(vocab.classes);
    const c = getClass(name);
    const style: Style = c.styles.includes('colour') && rng.chance(0.3) ? 'colour' : 'flat';
    const colours = classColours(name);
    const n = scene.objects.length + 1;
    const [lo, hi] = n === 1 ? [0.35, 0.55] : n === 2 ? [0.27, 0.42] : [0.22, 0.34];
    const spot = findSpot(rng, scene.objects, rng.range(lo, hi), 0.12);
    const object: SceneObject = {
      class: name,
      style,
      x: spot.x,
      y: spot.y,
      scale: spot.scale,
      flipX: rng.chance(0.5),
    };
    if (colours.length > 1 && rng.chance(0.3)) object.colour = rng.pick(colours.slice(1));
    const target = { ...scene, objects: [...scene.objects, object] };
    const added = withArticle(descriptor(target, n - 1));
    const instruction = fill(rng, ['add {new}', 'add {new} {loc}', 'put {new} {loc}', 'place {new} {loc}'], {
      new: added,
      loc: locationPhrase(object.x, object.y),
    });
    return { target, instruction, changed: { source: [], target: [n - 1] } };
  },

  remove(scene, rng) {
    const i = rng.int(0, scene.objects.length - 1);
    const target = { ...scene, objects: scene.objects.filter((_, k) => k !== i) };
    const instruction = fill(rng, ['remove {ref}', 'delete {ref}', 'take away {ref}', 'erase {ref}'], {
      ref: referTo(scene, i),
    });
    return { target, instruction, changed: { source: [i], target: [] } };
  },

  background(scene, rng, vocab) {
    const others = vocab.backgrounds.filter((b) => b !== scene.background.name);
    const textures = others.filter((b) => getBackground(b).kind === 'texture');
    const plains = others.filter((b) => getBackground(b).kind === 'plain');
    const useTextures = rng.chance(0.7);
    const name = rng.pick((useTextures && textures.length > 0) || plains.length === 0 ? textures : plains);
    const info = getBackground(name);
    const target = { ...scene, background: { name, seed: scene.background.seed } };
    const templates = ['change the background to {noun}', 'replace the background with {noun}'];
    if (scene.objects.length > 0) templates.push('put {objects} {place}');
    const instruction = fill(rng, templates, {
      noun: info.noun,
      objects: scene.objects.length > 0 ? definiteObjectList(scene) : '',
      place: info.phrase,
    });
    return { target, instruction, changed: { source: [], target: [] } };
  },

  style(scene, rng) {
    const i = rng.pick(styleCandidates(scene));
    const old = scene.objects[i];
    const style: Style = old.style === 'flat' ? 'colour' : 'flat';
    const objects = scene.objects.map((o, k) => (k === i ? { ...o, style } : o));
    const templates =
      style === 'colour'
        ? ['make {ref} glossy', 'give {ref} a glossy 3D look', 'render {ref} in a glossy 3D style']
        : ['make {ref} flat', 'draw {ref} in a flat style', 'give {ref} a flat cartoon look'];
    const instruction = fill(rng, templates, { ref: referTo(scene, i) });
    return { target: { ...scene, objects }, instruction, changed: { source: [i], target: [i] } };
  },

  colour(scene, rng) {
    const i = rng.pick(colourCandidates(scene));
    const old = scene.objects[i];
    const current = effectiveColour(old);
    const colour = rng.pick(classColours(old.class).filter((c) => c !== current));
    const objects = scene.objects.map((o, k) => (k === i ? { ...o, colour } : o));
    const instruction = fill(
      rng,
      [
        'make {ref} {colour}',
        'change the colour of {ref} to {colour}',
        'paint {ref} {colour}',
        'turn {ref} {colour}',
      ],
      {
        ref: referTo(scene, i),
        colour,
      },
    );
    return { target: { ...scene, objects }, instruction, changed: { source: [i], target: [i] } };
  },

  move(scene, rng) {
    const i = rng.pick(moveCandidates(scene));
    const o = scene.objects[i];
    const others = scene.objects.filter((_, k) => k !== i);
    const s = o.scale;
    let best: { x: number; y: number; score: number } | undefined;
    for (let attempt = 0; attempt < 80; attempt++) {
      const x = quantise(rng.range(s / 2, 1 - s / 2));
      const y = quantise(rng.range(s / 2, 1 - s / 2));
      const distance = Math.sqrt((x - o.x) ** 2 + (y - o.y) ** 2);
      if (distance < 0.12) continue;
      const overlap = Math.max(0, ...others.map((other) => boxOverlap(other, { x, y, scale: s })));
      // Prefer free spots; among equally free ones the first found, which keeps the choice seeded.
      const score = overlap <= 0.12 ? 0 : overlap;
      if (best === undefined || score < best.score) best = { x, y, score };
      if (score === 0) break;
    }
    // Degenerate geometry (a 0.7-wide object can move 0.15 at most): fall back to the farthest corner.
    const dest = best ?? { x: o.x < 0.5 ? 1 - s / 2 : s / 2, y: o.y < 0.5 ? 1 - s / 2 : s / 2 };
    const moved = { ...o, x: quantise(dest.x), y: quantise(dest.y) };
    const objects = scene.objects.map((other, k) => (k === i ? moved : other));
    const dx = moved.x - o.x;
    const dy = moved.y - o.y;
    const horizontal = Math.abs(dx) >= 0.06 ? (dx < 0 ? 'to the left' : 'to the right') : '';
    const vertical = Math.abs(dy) >= 0.06 ? (dy < 0 ? 'up' : 'down') : '';
    const direction =
      horizontal && vertical ? `${vertical} and ${horizontal}` : horizontal || vertical || 'a little';
    const from = locationPhrase(o.x, o.y);
    const to = locationPhrase(moved.x, moved.y);
    const templates = ['move {ref} {dir}', 'drag {ref} {dir}', 'shift {ref} {dir}'];
    if (to !== from) templates.push('move {ref} {to}');
    const instruction = fill(rng, templates, { ref: referTo(scene, i), dir: direction, to: toLocation(to) });
    return { target: { ...scene, objects }, instruction, changed: { source: [i], target: [i] } };
  },

  resize(scene, rng) {
    const i = rng.pick(resizeCandidates(scene));
    const o = scene.objects[i];
    const factors = resizeFactors(scene, o);
    const [lo, hi] = rng.pick(factors);
    const scale = quantise(o.scale * rng.range(lo, hi));
    const objects = scene.objects.map((other, k) => (k === i ? { ...other, scale } : other));
    const bigger = scale > o.scale;
    const templates = bigger
      ? ['make {ref} bigger', 'make {ref} larger', 'enlarge {ref}', 'scale up {ref}']
      : ['make {ref} smaller', 'shrink {ref}', 'scale down {ref}', 'make {ref} a bit smaller'];
    const instruction = fill(rng, templates, { ref: referTo(scene, i) });
    return { target: { ...scene, objects }, instruction, changed: { source: [i], target: [i] } };
  },
};

/**
 * Factor ranges that keep the object inside the image (resizing is about its centre), above 8 px and at most
 * 0.8 of the image, and that change its pixel size.
 */
function resizeFactors(scene: Scene, o: SceneObject): [number, number][] {
  const room = 2 * Math.min(o.x, 1 - o.x, o.y, 1 - o.y);
  const minScale = Math.max(0.12, 8 / Math.min(scene.width, scene.height));
  const out: [number, number][] = [];
  const grow: [number, number] = [1.3, 1.6];
  if (o.scale * grow[1] <= Math.min(0.8, room)) out.push(grow);
  const shrink: [number, number] = [0.55, 0.75];
  if (o.scale * shrink[0] >= minScale) out.push(shrink);
  return out;
}

/** "in the top left corner" → "to the top left corner", "on the left" → "to the left". */
function toLocation(phrase: string): string {
  return phrase.replace(/^(in|on|at) the /, 'to the ');
}

function fill(rng: Rng, templates: readonly string[], values: Readonly<Record<string, string>>): string {
  return rng.pick(templates).replace(/\{(\w+)\}/g, (_, key: string) => values[key] ?? '');
}

/** 1 where any object covers the pixel fully (union alpha = 255, as the renderer rounds it). */
async function coverage(scene: Scene): Promise<Float64Array> {
  const footprints = await Promise.all(scene.objects.map((_, i) => objectFootprint(scene, i)));
  const out = new Float64Array(scene.width * scene.height);
  for (let p = 0; p < out.length; p++) {
    let remaining = 1;
    for (const f of footprints) remaining *= 1 - f[p] / 255;
    out[p] = Math.round(255 * (1 - remaining)) === 255 ? 1 : 0;
  }
  return out;
}

/** Square (Chebyshev) dilation of a 0/1 mask by `r` pixels, separable. */
export function dilate(mask: Uint8Array, width: number, height: number, r: number): Uint8Array {
  const tmp = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 0;
      for (let k = Math.max(0, x - r); k <= Math.min(width - 1, x + r) && v === 0; k++)
        v = mask[y * width + k];
      tmp[y * width + x] = v;
    }
  }
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 0;
      for (let k = Math.max(0, y - r); k <= Math.min(height - 1, y + r) && v === 0; k++)
        v = tmp[k * width + x];
      out[y * width + x] = v;
    }
  }
  return out;
}

/**
 * Drag points for move/resize, in pixels. Move: the sprite's centre and its topmost solid point (alpha ≥ 128),
 * each shifted by the exact pixel offset of the sprite. Resize: the topmost and bottommost solid points, mapped
 * by the scale about the sprite's centre (exact up to ±1 px, since the artwork is re-rasterised at the new
 * size rather than resampled). Pairs whose target falls outside the image are dropped.
 */
async function dragPoints(plan: EditPlan): Promise<DragPoints> {
  const i = plan.changed.source[0];
  const j = plan.changed.target[0];
  const { width, height } = plan.source;
  const before = placement(plan.source, plan.source.objects[i]);
  const after = placement(plan.target, plan.target.objects[j]);
  const alpha = await objectFootprint(plan.source, i);
  const extremes = solidExtremes(alpha, width, height);
  const handles: Point[] = [];
  const targets: Point[] = [];
  const push = (h: Point, t: Point): void => {
    if (t[0] >= 0 && t[0] < width && t[1] >= 0 && t[1] < height) {
      handles.push(h);
      targets.push(t);
    }
  };
  if (plan.task === 'move') {
    const dx = after.left - before.left;
    const dy = after.top - before.top;
    const centre: Point = [
      before.left + Math.floor(before.size / 2),
      before.top + Math.floor(before.size / 2),
    ];
    if (centre[0] >= 0 && centre[0] < width && centre[1] >= 0 && centre[1] < height)
      push(centre, [centre[0] + dx, centre[1] + dy]);
    if (extremes) push(extremes.top, [extremes.top[0] + dx, extremes.top[1] + dy]);
  } else if (extremes) {
    const k = after.size / before.size;
    const map = (p: Point): Point => {
      const cx = before.left + before.size / 2;
      const cy = before.top + before.size / 2;
      const nx = after.left + after.size / 2 + (p[0] + 0.5 - cx) * k - 0.5;
      const ny = after.top + after.size / 2 + (p[1] + 0.5 - cy) * k - 0.5;
      return [Math.round(nx), Math.round(ny)];
    };
    push(extremes.top, map(extremes.top));
    push(extremes.bottom, map(extremes.bottom));
  }
  return { handles, targets };
}

/** The middle of the first and last rows where the footprint is solid (alpha ≥ 128). */
function solidExtremes(
  alpha: Uint8Array,
  width: number,
  height: number,
): { top: Point; bottom: Point } | undefined {
  const rowPoint = (y: number): Point | undefined => {
    let sum = 0;
    let count = 0;
    for (let x = 0; x < width; x++) {
      if (alpha[y * width + x] >= 128) {
        sum += x;
        count++;
      }
    }
    if (count === 0) return undefined;
    // The solid pixel nearest the row's centroid, so the point is on the object even for a U-shaped row.
    const mean = sum / count;
    let best = -1;
    for (let x = 0; x < width; x++) {
      if (alpha[y * width + x] >= 128 && (best < 0 || Math.abs(x - mean) < Math.abs(best - mean))) best = x;
    }
    return [best, y];
  };
  let top: Point | undefined;
  for (let y = 0; y < height && top === undefined; y++) top = rowPoint(y);
  let bottom: Point | undefined;
  for (let y = height - 1; y >= 0 && bottom === undefined; y--) bottom = rowPoint(y);
  return top && bottom ? { top, bottom } : undefined;
}
