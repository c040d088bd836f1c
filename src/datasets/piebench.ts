/**
 * PIE-Bench's layout (Ju et al., "PnP Inversion", 2023): `mapping_file.json` maps a case id to
 *   { image_path, original_prompt, editing_prompt, editing_instruction, editing_type_id, blended_word, mask }
 * with images under `annotation_images/<image_path>`. `editing_prompt` marks the edited words in brackets
 * ("a [rusty] bicycle"); the mask is a run-length list [start, length, start, length, …] over the 512 × 512 image,
 * row-major, and the reference decoder sets the one-pixel border to 1 ("to avoid annotation errors in boundary").
 * Editing types: 0 random, 1 change object, 2 add object, 3 delete object, 4 change content, 5 change pose,
 * 6 change colour, 7 change material, 8 change background, 9 change style.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadImage, saveImage } from '../image/io.js';
import { resizeBilinear, resizeBilinearChannels } from '../image/resample.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';

export const PIEBENCH_SIZE = 512;

/** The survey's task for each PIE-Bench editing type (type 0, "random", has none). */
export const PIEBENCH_TASKS: Readonly<Record<number, string | undefined>> = {
  0: undefined,
  1: 'replace',
  2: 'add',
  3: 'remove',
  4: 'replace',
  5: 'action',
  6: 'texture',
  7: 'texture',
  8: 'background',
  9: 'style',
};

export interface PieBenchEntry {
  image_path: string;
  original_prompt: string;
  editing_prompt: string;
  editing_instruction?: string;
  editing_type_id: string;
  blended_word?: string;
  mask: number[];
}

export interface PieBenchCase {
  id: string;
  imagePath: string;
  /** [1, 3, H, W] in [-1, 1], at the file's size. */
  image: NDArray;
  sourcePrompt: string;
  /** The editing prompt without PIE-Bench's brackets. */
  targetPrompt: string;
  instruction: string;
  editingType: number;
  task: string | undefined;
  /** [1, 1, H, W], 1 = the edited region (decoded at 512², resized to the image). */
  mask: NDArray;
}

/** PIE-Bench's mask decoding, border rule included. */
export function decodePieBenchMask(encoded: readonly number[], size = PIEBENCH_SIZE): Uint8Array {
  if (encoded.length % 2 !== 0) throw new Error('the mask run-length list has an odd length');
  const length = size * size;
  const mask = new Uint8Array(length);
  for (let i = 0; i < encoded.length; i += 2) {
    const start = encoded[i];
    if (!Number.isInteger(start) || start < 0 || !Number.isInteger(encoded[i + 1]) || encoded[i + 1] < 0)
      throw new Error(`mask run ${i / 2} is not two non-negative integers`);
    mask.fill(1, Math.min(start, length), Math.min(start + encoded[i + 1], length));
  }
  for (let k = 0; k < size; k++) {
    mask[k] = 1;
    mask[(size - 1) * size + k] = 1;
    mask[k * size] = 1;
    mask[k * size + size - 1] = 1;
  }
  return mask;
}

/** Run-length encoding in PIE-Bench's form (the inverse of the decoder, border aside). */
export function encodePieBenchMask(mask: Uint8Array): number[] {
  const runs: number[] = [];
  let i = 0;
  while (i < mask.length) {
    if (!mask[i]) {
      i++;
      continue;
    }
    const start = i;
    while (i < mask.length && mask[i]) i++;
    runs.push(start, i - start);
  }
  return runs;
}

export function stripBrackets(prompt: string): string {
  return prompt.replace(/[[\]]/g, '').replace(/\s+/g, ' ').trim();
}

export async function readPieBench(dir: string, limit = Infinity): Promise<PieBenchCase[]> {
  const mappingPath = join(dir, 'mapping_file.json');
  if (!existsSync(mappingPath))
    throw new UserError(`'${dir}' is not a PIE-Bench folder: no mapping_file.json`);
  let mapping: Record<string, PieBenchEntry>;
  try {
    mapping = JSON.parse(readFileSync(mappingPath, 'utf8')) as Record<string, PieBenchEntry>;
  } catch (error) {
    throw new UserError(
      `'${mappingPath}' is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const cases: PieBenchCase[] = [];
  for (const [id, e] of Object.entries(mapping).sort(([a], [b]) => a.localeCompare(b))) {
    if (cases.length >= limit) break;
    const what = (field: string) => new UserError(`${mappingPath}: case ${id}: ${field}`);
    if (typeof e.image_path !== 'string') throw what('no image_path');
    if (typeof e.original_prompt !== 'string' || typeof e.editing_prompt !== 'string')
      throw what('prompts missing');
    if (!Array.isArray(e.mask)) throw what('no mask list');
    const type = Number(e.editing_type_id);
    if (!Number.isInteger(type) || type < 0 || type > 9)
      throw what(`editing_type_id '${e.editing_type_id}' is not 0–9`);
    const image = await loadImage(join(dir, 'annotation_images', e.image_path), { multiple: 1 });
    let decoded: Uint8Array;
    try {
      decoded = decodePieBenchMask(e.mask);
    } catch (error) {
      throw what(error instanceof Error ? error.message : String(error));
    }
    const full = new NDArray(Float32Array.from(decoded), [1, 1, PIEBENCH_SIZE, PIEBENCH_SIZE]);
    const mask =
      image.height === PIEBENCH_SIZE && image.width === PIEBENCH_SIZE
        ? full
        : resizeBilinear(full, image.height, image.width).map((v) => (v >= 0.5 ? 1 : 0));
    cases.push({
      id,
      imagePath: e.image_path,
      image: image.tensor,
      sourcePrompt: e.original_prompt,
      targetPrompt: stripBrackets(e.editing_prompt),
      instruction: e.editing_instruction ?? '',
      editingType: type,
      task: PIEBENCH_TASKS[type],
      mask,
    });
  }
  return cases;
}

/** PIE-Bench's editing type for one of the survey's tasks. */
const TYPE_OF_TASK: Record<string, number> = {
  replace: 1,
  add: 2,
  remove: 3,
  action: 5,
  texture: 6,
  background: 8,
  style: 9,
};

export interface PieBenchWriteCase {
  id: string;
  task: string;
  /** [1, 3, H, W] in [0, 1]; written at 512² (nearest neighbour when upscaling small renders). */
  image01: NDArray;
  sourcePrompt: string;
  targetPrompt: string;
  instruction: string;
  /** [1, 1, H, W], 1 = edited. */
  region: NDArray;
  /** Words that change (PIE-Bench brackets them in the editing prompt): the target's words not in the source. */
}

/** Write cases in PIE-Bench's layout, images under annotation_images/<type folder>/<id>.png. */
export async function writePieBench(dir: string, cases: readonly PieBenchWriteCase[]): Promise<void> {
  const mapping: Record<string, PieBenchEntry> = {};
  for (const c of cases) {
    const type = TYPE_OF_TASK[c.task];
    if (type === undefined) throw new Error(`no PIE-Bench editing type for task '${c.task}'`);
    const imagePath = `${type}_editkit_${c.task}/${c.id}.png`;
    const [, , h, w] = c.image01.shape;
    const image =
      h === PIEBENCH_SIZE && w === PIEBENCH_SIZE ? c.image01 : upscaleNearest(c.image01, PIEBENCH_SIZE);
    const path = join(dir, 'annotation_images', imagePath);
    await mkdir(dirname(path), { recursive: true });
    await saveImage(image, path);
    const region = h === PIEBENCH_SIZE ? c.region : upscaleNearest(c.region, PIEBENCH_SIZE);
    const source = new Set(c.sourcePrompt.split(' '));
    const editing = c.targetPrompt
      .split(' ')
      .map((word) => (source.has(word) ? word : `[${word}]`))
      .join(' ');
    mapping[c.id] = {
      image_path: imagePath,
      original_prompt: c.sourcePrompt,
      editing_prompt: editing,
      editing_instruction: c.instruction,
      editing_type_id: String(type),
      blended_word: '',
      mask: encodePieBenchMask(Uint8Array.from(region.data, (v) => (v >= 0.5 ? 1 : 0))),
    };
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'mapping_file.json'), `${JSON.stringify(mapping, null, 1)}\n`);
}

function upscaleNearest(x: NDArray, size: number): NDArray {
  const [, channels, h, w] = x.shape;
  if (size % h !== 0 || size % w !== 0) return resizeBilinearChannels(x, size, size);
  const fy = size / h;
  const fx = size / w;
  const out = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++)
    for (let y = 0; y < size; y++)
      for (let xx = 0; xx < size; xx++)
        out[(c * size + y) * size + xx] = x.data[(c * h + Math.floor(y / fy)) * w + Math.floor(xx / fx)];
  return new NDArray(out, [1, channels, size, size]);
}
