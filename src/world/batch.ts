/**
 * The batch-render stream: rendered scenes or edit pairs, as a byte stream that a Python trainer reads without
 * any Node-side dependency (see README.md, "Batch protocol", and scripts/world/read_batch.py).
 *
 * Stream = one stream-header line, then records. Each line is UTF-8 JSON ending in "\n"; a record's line is
 * followed by exactly `nbytes` raw bytes: its arrays, uint8, C order, concatenated in the order `arrays` lists
 * them. Keeping metadata as JSON lines and pixels as raw bytes makes the reader ~10 lines of Python
 * (readline, json.loads, read, numpy.frombuffer) and lets the trainer skip records without decoding images.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';

import { allCaptions, caption, sceneFacts, type SceneFacts } from './caption.js';
import { CLASS_NAMES, classColours, getClass } from './catalog.js';
import {
  applicableTasks,
  EDIT_TASKS,
  planEdit,
  sampleEdit,
  type EditVocabulary,
  type DragPoints,
  type EditTask,
} from './edits.js';
import { hashSeed, Rng } from './prng.js';
import { renderScene } from './render.js';
import { sampleScene, type SampleSceneOptions, type Scene } from './scene.js';
import { splitSeed, type Split } from './splits.js';

export const BATCH_FORMAT = 'editkit-emojiworld-batch';
export const BATCH_VERSION = 1;

export interface BatchArray {
  name: string;
  dtype: 'uint8';
  shape: number[];
}

interface RecordBase {
  index: number;
  /** The scene seed (in the split's range). */
  seed: number;
  split: Split;
  width: number;
  height: number;
  arrays: BatchArray[];
  nbytes: number;
}

export interface SceneRecordHeader extends RecordBase {
  type: 'scene';
  caption: string;
  /** Every caption template's wording, for text augmentation. */
  captions: string[];
  facts: SceneFacts;
  scene: Scene;
}

export interface EditRecordHeader extends RecordBase {
  type: 'edit';
  editSeed: number;
  task: EditTask;
  instruction: string;
  sourceCaption: string;
  targetCaption: string;
  source: Scene;
  target: Scene;
  sourceFacts: SceneFacts;
  targetFacts: SceneFacts;
  changed: { source: number[]; target: number[] };
  dilation: number;
  drag: DragPoints | null;
}

export type BatchRecordHeader = SceneRecordHeader | EditRecordHeader;

export interface BatchRecord {
  header: BatchRecordHeader;
  /** The arrays' bytes, in header order. */
  payload: Uint8Array[];
}

export interface BatchOptions {
  split: Split;
  /** Index of the first scene within the split. */
  start: number;
  count: number;
  /** 'scene': rendered scenes with masks; 'edit': ground-truth edit pairs. */
  mode: 'scene' | 'edit';
  /** Edit tasks to draw from (default all); each record's task is drawn from the seed. */
  tasks?: readonly EditTask[];
  /** Include per-object masks in scene records (default true). */
  objectMasks?: boolean;
  scene?: SampleSceneOptions;
}

/** The records of a batch, in order; a pure function of the options. */
export async function* batchRecords(options: BatchOptions): AsyncGenerator<BatchRecord> {
  for (let k = 0; k < options.count; k++) {
    const index = options.start + k;
    const seed = splitSeed(options.split, index);
    yield options.mode === 'scene'
      ? await sceneRecord(options, index, seed)
      : await editRecord(options, index, seed);
  }
}

async function sceneRecord(options: BatchOptions, index: number, seed: number): Promise<BatchRecord> {
  const scene = sampleScene(seed, options.scene);
  const r = await renderScene(scene);
  const { width, height } = scene;
  const payload: Uint8Array[] = [r.image, r.union];
  const arrays: BatchArray[] = [array('image', [height, width, 3]), array('union', [height, width])];
  if (options.objectMasks ?? true) {
    const objects = new Uint8Array(r.objectMasks.length * width * height);
    r.objectMasks.forEach((m, i) => objects.set(m, i * width * height));
    payload.push(objects);
    arrays.push(array('objects', [r.objectMasks.length, height, width]));
  }
  const header: SceneRecordHeader = {
    type: 'scene',
    index,
    seed,
    split: options.split,
    width,
    height,
    caption: caption(scene),
    captions: allCaptions(scene),
    facts: sceneFacts(scene),
    scene,
    arrays,
    nbytes: byteLength(payload),
  };
  return { header, payload };
}

async function editRecord(options: BatchOptions, index: number, seed: number): Promise<BatchRecord> {
  const tasks = options.tasks ?? EDIT_TASKS;
  if (tasks.length === 0) throw new RangeError('batch: no edit tasks');
  const task = new Rng('batch-task', seed).pick(tasks);
  const scene = applicableScene(seed, task, options.scene);
  const editSeed = hashSeed('batch-edit', seed);
  const edit = await sampleEdit(scene, task, editSeed, editVocabulary(options.scene));
  const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
  const { width, height } = scene;
  const payload = [source.image, target.image, edit.mask, source.union, target.union];
  const arrays = [
    array('source', [height, width, 3]),
    array('target', [height, width, 3]),
    array('mask', [height, width]),
    array('source_union', [height, width]),
    array('target_union', [height, width]),
  ];
  const header: EditRecordHeader = {
    type: 'edit',
    index,
    seed,
    split: options.split,
    width,
    height,
    editSeed,
    task: edit.task,
    instruction: edit.instruction,
    sourceCaption: edit.sourceCaption,
    targetCaption: edit.targetCaption,
    source: edit.source,
    target: edit.target,
    sourceFacts: sceneFacts(edit.source),
    targetFacts: sceneFacts(edit.target),
    changed: edit.changed,
    dilation: edit.dilation,
    drag: edit.drag ?? null,
    arrays,
    nbytes: byteLength(payload),
  };
  return { header, payload };
}

/**
 * The scene for `seed`, re-sampled from the same seed with narrower options when `task` does not apply to
 * the first draw (an "add" needs room, a "colour" change a class with colours), so every record keeps a seed
 * in its split's range.
 */
export function applicableScene(seed: number, task: EditTask, options: SampleSceneOptions = {}): Scene {
  const first = sampleScene(seed, options);
  if (applicableTasks(first).includes(task)) return first;
  const classes = options.classes ?? CLASS_NAMES;
  const narrowed: SampleSceneOptions = { ...options };
  if (task === 'add') narrowed.maxObjects = Math.min(options.maxObjects ?? 3, 2);
  if (task === 'add') narrowed.minObjects = Math.min(options.minObjects ?? 1, narrowed.maxObjects ?? 2);
  if (task === 'style') narrowed.classes = classes.filter((c) => getClass(c).styles.includes('colour'));
  if (task === 'colour') narrowed.classes = classes.filter((c) => classColours(c).length > 1);
  if (['replace', 'remove', 'style', 'colour', 'move', 'resize'].includes(task))
    narrowed.minObjects = Math.max(1, options.minObjects ?? 1);
  const second = sampleScene(seed, narrowed);
  // planEdit throws a UserError naming the reason if even the narrowed scene does not fit.
  planEdit(second, task, 0, editVocabulary(options));
  return second;
}

/** What an edit of a scene sampled with `options` may introduce: the same classes and backgrounds. */
export function editVocabulary(options: SampleSceneOptions = {}): EditVocabulary {
  return { classes: options.classes, backgrounds: options.backgrounds };
}

function array(name: string, shape: number[]): BatchArray {
  return { name, dtype: 'uint8', shape };
}

function byteLength(parts: readonly Uint8Array[]): number {
  return parts.reduce((n, p) => n + p.byteLength, 0);
}

/** The stream's first line: what follows and how to read it. */
export function streamHeader(options: BatchOptions): Record<string, unknown> {
  return {
    type: 'header',
    format: BATCH_FORMAT,
    version: BATCH_VERSION,
    mode: options.mode,
    split: options.split,
    start: options.start,
    count: options.count,
    layout:
      'each record: one JSON line, then `nbytes` raw bytes = its `arrays` (uint8, C order) concatenated',
  };
}

/** One record's bytes: its JSON line, then the payload. */
export function encodeRecord(record: BatchRecord): Uint8Array[] {
  return [Buffer.from(`${JSON.stringify(record.header)}\n`, 'utf8'), ...record.payload];
}

/**
 * Write a whole batch to `out`, honouring back-pressure; resolves with the number of records and bytes. A
 * stream error (the reader went away: EPIPE) rejects instead of crashing the process.
 */
export async function writeBatch(
  options: BatchOptions,
  out: Writable,
): Promise<{ records: number; bytes: number }> {
  let failure: Error | undefined;
  const onError = (error: Error): void => {
    failure ??= error;
  };
  out.on('error', onError);
  let bytes = 0;
  const write = async (chunk: Uint8Array): Promise<void> => {
    if (failure) throw failure;
    bytes += chunk.byteLength;
    if (!out.write(chunk)) await once(out, 'drain');
  };
  try {
    await write(Buffer.from(`${JSON.stringify(streamHeader(options))}\n`, 'utf8'));
    let records = 0;
    for await (const record of batchRecords(options)) {
      for (const chunk of encodeRecord(record)) await write(chunk);
      records++;
    }
    if (failure) throw failure;
    return { records, bytes };
  } finally {
    out.off('error', onError);
  }
}
