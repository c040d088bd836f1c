/**
 * DragBench's layout (Shi et al., DragDiffusion): one folder per case, usually grouped by category
 * (`drag_bench_data/<category>/<case>/`), each with
 *  - `original_image.png`: the input;
 *  - `user_drag.png`: the same with the mask and the points drawn (for people; not read);
 *  - `meta_data.pkl`: a pickled dict with `prompt` (str), `points` (a list of [x, y] pixels, alternating
 *    handle, target, handle, target, …) and `mask` (a NumPy uint8 array, H × W, nonzero = may change).
 * The official evaluation reads the mask as `mask / 255 > 0`; any nonzero value counts here too.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { loadImage, overlayMask, saveImage } from '../image/io.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { NumpyArray, parsePickle, PickleDict, writePickle } from '../util/pickle.js';

export interface DragBenchCase {
  /** Path of the case folder relative to the dataset root, e.g. `animals/cat_1`. */
  name: string;
  dir: string;
  /** [1, 3, H, W] in [-1, 1], at the file's size. */
  image: NDArray;
  prompt: string;
  handles: [number, number][];
  targets: [number, number][];
  /** [1, 1, H, W], 1 = may change. */
  mask: NDArray;
}

export const DRAGBENCH_FILES = {
  image: 'original_image.png',
  preview: 'user_drag.png',
  meta: 'meta_data.pkl',
} as const;

/** Every case folder under `root` (any depth), sorted by name. */
export function findDragBenchCases(root: string): string[] {
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw new UserError(`DragBench folder '${root}' does not exist`);
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (existsSync(join(dir, DRAGBENCH_FILES.meta))) {
      found.push(dir);
      return;
    }
    if (depth >= 4) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) walk(join(dir, entry.name), depth + 1);
    }
  };
  walk(root, 0);
  if (found.length === 0)
    throw new UserError(`'${root}' holds no DragBench case (no folder with ${DRAGBENCH_FILES.meta})`);
  return found.sort();
}

function metaError(path: string, what: string): UserError {
  return new UserError(`'${path}': ${what}`);
}

/** Read one case folder. */
export async function readDragBenchCase(dir: string, root = dir): Promise<DragBenchCase> {
  const metaPath = join(dir, DRAGBENCH_FILES.meta);
  let meta;
  try {
    meta = parsePickle(readFileSync(metaPath));
  } catch (error) {
    throw metaError(
      metaPath,
      `cannot read the pickle: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (!(meta instanceof PickleDict)) throw metaError(metaPath, 'expected a dict');
  const prompt = meta.get('prompt') ?? '';
  if (typeof prompt !== 'string') throw metaError(metaPath, "'prompt' is not a string");
  const points = meta.get('points');
  if (!Array.isArray(points) || points.length < 2 || points.length % 2 !== 0)
    throw metaError(metaPath, "'points' must be a list of [x, y] pairs, handle then target, an even number");
  const xy = points.map((p, i) => {
    const pair = p instanceof NumpyArray ? Array.from(p.data) : Array.isArray(p) ? p.map(Number) : [];
    if (pair.length !== 2 || !pair.every(Number.isFinite))
      throw metaError(metaPath, `point ${i + 1} is not [x, y]`);
    return pair as [number, number];
  });
  const loaded = await loadImage(join(dir, DRAGBENCH_FILES.image), { multiple: 1 });
  const { width, height } = loaded;
  const maskValue = meta.get('mask');
  let mask: NDArray;
  if (maskValue === undefined || maskValue === null) mask = NDArray.full([1, 1, height, width], 1);
  else {
    if (!(maskValue instanceof NumpyArray)) throw metaError(metaPath, "'mask' is not a NumPy array");
    const [h, w] = maskValue.shape;
    if (maskValue.shape.length !== 2 || h !== height || w !== width)
      throw metaError(
        metaPath,
        `'mask' is ${maskValue.shape.join('×')}, the image is ${height}×${width} (H×W)`,
      );
    mask = new NDArray(
      Float32Array.from(maskValue.data, (v) => (v > 0 ? 1 : 0)),
      [1, 1, height, width],
    );
  }
  const handles = xy.filter((_, i) => i % 2 === 0);
  const targets = xy.filter((_, i) => i % 2 === 1);
  for (const p of xy) {
    if (p[0] < 0 || p[1] < 0 || p[0] > width - 1 || p[1] > height - 1)
      throw metaError(metaPath, `point [${p.join(', ')}] lies outside the ${width}×${height} image`);
  }
  return { name: relative(root, dir) || '.', dir, image: loaded.tensor, prompt, handles, targets, mask };
}

/** Every case under `root`. */
export async function readDragBench(root: string): Promise<DragBenchCase[]> {
  const cases: DragBenchCase[] = [];
  for (const dir of findDragBenchCases(root)) cases.push(await readDragBenchCase(dir, root));
  return cases;
}

/**
 * Write a case in DragBench's layout: the image, the pickle (uint8 mask 0/255, as DragBench's UI saves it, and
 * integer points) and a preview with the mask tinted and handles (red) and targets (blue) marked.
 */
export async function writeDragBenchCase(
  dir: string,
  c: {
    image: NDArray;
    prompt: string;
    handles: readonly number[][];
    targets: readonly number[][];
    mask: NDArray;
  },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const [, , height, width] = c.image.shape;
  if (c.handles.length !== c.targets.length || c.handles.length === 0)
    throw new Error('writeDragBenchCase: give as many handles as targets, at least one');
  const image01 = c.image.map((v) => Math.min(1, Math.max(0, v / 2 + 0.5)));
  await saveImage(image01, join(dir, DRAGBENCH_FILES.image));
  const points: number[][] = [];
  c.handles.forEach((h, i) => points.push(h.map(Math.round), c.targets[i].map(Math.round)));
  const mask = new NumpyArray(
    'uint8',
    [height, width],
    Float64Array.from(c.mask.data, (v) => (v >= 0.5 ? 255 : 0)),
  );
  await writeFileAtomic(join(dir, DRAGBENCH_FILES.meta), writePickle({ prompt: c.prompt, points, mask }));
  const preview = overlayMask(image01, c.mask, [1, 1, 1], 0.35);
  const plane = height * width;
  const dot = (p: readonly number[], colour: [number, number, number]) => {
    const r = Math.max(1, Math.round(Math.min(width, height) / 64));
    for (let y = Math.round(p[1]) - r; y <= Math.round(p[1]) + r; y++) {
      for (let x = Math.round(p[0]) - r; x <= Math.round(p[0]) + r; x++) {
        if (x < 0 || y < 0 || x >= width || y >= height) continue;
        for (let ch = 0; ch < 3; ch++) preview.data[ch * plane + y * width + x] = colour[ch];
      }
    }
  };
  c.handles.forEach((h) => dot(h, [1, 0, 0]));
  c.targets.forEach((t) => dot(t, [0, 0, 1]));
  await saveImage(preview, join(dir, DRAGBENCH_FILES.preview));
}
