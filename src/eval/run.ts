/**
 * `editkit eval`: every method on every task it accepts, the same fixed cases for all, scored against the ground
 * truth; results.json after every edit (so an interrupted run resumes where it stopped), then results.csv and a
 * self-contained report.html.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { imageToPng, sideBySide } from '../image/io.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import type { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import type { EditTask } from '../world/edits.js';
import type { SampleSceneOptions } from '../world/scene.js';
import type { EvalMethod, MethodInput } from './methods.js';
import { METRICS, scoreEdit, type EditDetails, type EditScores, type Scorers } from './metrics.js';
import { writeReport } from './report.js';
import {
  evalCase,
  suiteCaseIndices,
  SUITE_VERSION,
  worldTasksOf,
  type EvalCase,
  type EvalTask,
} from './tasks.js';

export interface EvalRecord {
  caseId: string;
  task: EvalTask;
  method: string;
  instruction: string;
  scores: EditScores;
  details?: EditDetails;
}

export interface EvalResults {
  suiteVersion: number;
  model: string;
  device: string;
  versions: Record<string, string>;
  settings: {
    cases: number;
    tasks: EvalTask[];
    imageSize: number;
    seed: number;
    dataset?: string;
    /** Tasks restricted to some of their EmojiWorld edits (e.g. action to moves). */
    variants?: Partial<Record<EvalTask, EditTask[]>>;
    /** How the scorers were set up, where that changes the figures (the DIFT matcher). */
    scoring?: Record<string, unknown>;
  };
  methods: Pick<EvalMethod, 'key' | 'label' | 'family' | 'tasks' | 'needs' | 'settings'>[];
  records: EvalRecord[];
  /** Example grids per task: PNG file names under images/, with the column labels. */
  examples: { task: EvalTask; caseId: string; file: string; columns: string[] }[];
  startedAt: string;
  finishedAt?: string;
}

export interface EvalOptions {
  tasks: readonly EvalTask[];
  /** Cases from a dataset (e.g. PIE-Bench) instead of EmojiWorld's suite; `cases` then caps their number. */
  dataset?: { name: string; cases: readonly EvalCase[] };
  cases: number;
  /**
   * Restrict a task's cases to some of its EmojiWorld edits: `{ action: ['move'] }` runs the first `cases` action
   * cases that are moves, keeping their suite ids (action-0, action-2, …).
   */
  variants?: Partial<Record<EvalTask, readonly EditTask[]>>;
  methods: readonly EvalMethod[];
  scene: SampleSceneOptions;
  out: string;
  seed: number;
  /** Example grids per task. */
  examples: number;
  resume: boolean;
  versions: Record<string, string>;
  onProgress?: (done: number, total: number, label: string) => void;
  log?: (line: string) => void;
}

// JSON has no infinity: a score of identical pixels (PSNR ∞) is kept as the string "Infinity" so that a resumed
// run averages it as it would have (NaN, n/a, becomes null).
const SCORE_KEYS = new Set<string>(METRICS.map((m) => m.key));

function serializeResults(results: EvalResults): string {
  const replacer = (_key: string, value: unknown) =>
    value === Infinity ? 'Infinity' : value === -Infinity ? '-Infinity' : value;
  return `${JSON.stringify(results, replacer, 1)}\n`;
}

/** A results.json as written by runEval, infinite scores restored (NaN scores read back as null). */
export function readEvalResults(path: string): EvalResults {
  return JSON.parse(readFileSync(path, 'utf8'), (key, value: unknown) =>
    SCORE_KEYS.has(key) && (value === 'Infinity' || value === '-Infinity') ? Number(value) : value,
  ) as EvalResults;
}

const ALL_INPUTS: readonly MethodInput[] = [
  'target caption',
  'source caption',
  'ground-truth mask',
  'drag points',
  'fine-tuned delta',
  'ground truth',
];

/** What a dataset's case provides (a fine-tuned delta is the method's own, never the case's). */
function caseInputs(c: EvalCase): MethodInput[] {
  return [
    'target caption',
    'source caption',
    'ground-truth mask',
    'fine-tuned delta',
    ...(c.drag ? (['drag points'] as const) : []),
    ...(c.target01 ? (['ground truth'] as const) : []),
  ];
}

function sameRun(previous: EvalResults, next: EvalResults): boolean {
  return (
    previous.suiteVersion === next.suiteVersion &&
    previous.model === next.model &&
    JSON.stringify(previous.settings) === JSON.stringify(next.settings) &&
    JSON.stringify(previous.methods) === JSON.stringify(next.methods)
  );
}

export async function runEval(
  bundle: StableDiffusionBundle,
  scorers: Scorers,
  o: EvalOptions,
): Promise<EvalResults> {
  await mkdir(join(o.out, 'images'), { recursive: true });
  const resultsPath = join(o.out, 'results.json');
  const size = o.scene.width ?? bundle.defaultImageSize;
  for (const [task, edits] of Object.entries(o.variants ?? {}) as [EvalTask, readonly EditTask[]][])
    if (!edits.some((e) => worldTasksOf(task).includes(e)))
      throw new UserError(
        `task ${task} has no ${edits.join('/')} cases; its cases are ${worldTasksOf(task).join('/')}`,
      );
  let results: EvalResults = {
    suiteVersion: SUITE_VERSION,
    model: bundle.dir,
    device: bundle.device,
    versions: o.versions,
    settings: {
      cases: o.cases,
      tasks: [...o.tasks],
      // A dataset's images keep their own size (rounded to the model's multiple): the first case's stands for all.
      imageSize: o.dataset?.cases[0]?.source.shape[3] ?? size,
      seed: o.seed,
      dataset: o.dataset?.name,
      ...(o.variants
        ? {
            variants: Object.fromEntries(
              Object.entries(o.variants).map(([task, edits]) => [task, [...edits]]),
            ),
          }
        : {}),
      ...(scorers.dift
        ? { scoring: { dift: { tensor: scorers.dift.tensor, ...scorers.dift.settings } } }
        : {}),
    },
    methods: o.methods.map(({ key, label, family, tasks, needs, settings }) => ({
      key,
      label,
      family,
      tasks,
      needs,
      settings,
    })),
    records: [],
    examples: [],
    startedAt: new Date().toISOString(),
  };
  if (existsSync(resultsPath)) {
    let previous: EvalResults | undefined;
    try {
      previous = readEvalResults(resultsPath);
    } catch {
      previous = undefined;
    }
    if (previous && o.resume && sameRun(previous, results)) {
      results = { ...previous, finishedAt: undefined };
      o.log?.(`resuming: ${previous.records.length} edits already in ${resultsPath}`);
    } else if (previous && !o.resume) {
      throw new UserError(
        `'${resultsPath}' exists: pass --resume to continue that run, or choose another --report folder`,
      );
    } else if (previous) {
      throw new UserError(`'${resultsPath}' holds a run with other settings; choose another --report folder`);
    }
  }
  const done = new Set(results.records.map((r) => `${r.caseId}|${r.method}`));
  const scene = { ...o.scene, width: size, height: size };
  // The cases, lazily: EmojiWorld's are rendered when reached (a resumed run skips finished ones cheaply).
  // EmojiWorld's cases have every input a method can need; a dataset's have what its files hold.
  const slots: {
    task: EvalTask;
    id: string;
    k: number;
    inputs: readonly MethodInput[];
    load: () => Promise<EvalCase>;
  }[] = o.dataset
    ? o.dataset.cases
        .filter((c) => o.tasks.includes(c.task))
        .slice(0, o.cases * o.tasks.length)
        .map((c, k) => ({ task: c.task, id: c.id, k, inputs: caseInputs(c), load: async () => c }))
    : o.tasks.flatMap((task) =>
        suiteCaseIndices(task, o.cases, scene, {
          edits: o.variants?.[task],
          onSkip: (id, reason) => o.log?.(`${id}: skipped, not in this world subset (${reason})`),
        }).map((k) => ({
          task,
          id: `${task}-${k}`,
          k,
          inputs: ALL_INPUTS,
          load: () => evalCase(task, k, scene),
        })),
      );
  const applicable = (slot: (typeof slots)[number], m: EvalMethod) =>
    m.tasks.includes(slot.task) && m.needs.every((need) => slot.inputs.includes(need));
  const total = slots.reduce((n, slot) => n + o.methods.filter((m) => applicable(slot, m)).length, 0);
  let finished = slots.reduce(
    (n, slot) => n + o.methods.filter((m) => applicable(slot, m) && done.has(`${slot.id}|${m.key}`)).length,
    0,
  );
  o.onProgress?.(finished, total, 'eval');
  const examplesPerTask = new Map<EvalTask, number>();
  for (const e of results.examples) examplesPerTask.set(e.task, (examplesPerTask.get(e.task) ?? 0) + 1);
  for (const slot of slots) {
    const methods = o.methods.filter((m) => applicable(slot, m));
    const pending = methods.filter((m) => !done.has(`${slot.id}|${m.key}`));
    const wantExample =
      (examplesPerTask.get(slot.task) ?? 0) < o.examples &&
      !results.examples.some((e) => e.caseId === slot.id);
    if (methods.length === 0 || (pending.length === 0 && !wantExample)) continue;
    const c = await slot.load();
    const images: NDArray[] = [];
    for (const method of methods) {
      const already = done.has(`${c.id}|${method.key}`);
      if (already && !wantExample) continue;
      const t = performance.now();
      const output = await method.run(bundle, c, o.seed + slot.k);
      const seconds = (performance.now() - t) / 1000;
      // The reference rows' images are the input and ground-truth columns already.
      if (method.family !== 'reference') images.push(output.image);
      if (already) continue;
      const { scores, details } = await scoreEdit(scorers, c, output, seconds);
      results.records.push({
        caseId: c.id,
        task: slot.task,
        method: method.key,
        instruction: c.instruction,
        scores,
        ...(Object.keys(details).length > 0 ? { details } : {}),
      });
      done.add(`${c.id}|${method.key}`);
      o.onProgress?.(++finished, total, `${slot.task} · ${method.label}`);
      await writeFileAtomic(resultsPath, serializeResults(results));
    }
    if (wantExample) {
      const file = `${c.id.replace(/[^\w.-]/g, '_')}.png`;
      const panels = [c.source01, ...(c.target01 ? [c.target01] : []), ...images];
      await writeFileAtomic(join(o.out, 'images', file), await imageToPng(sideBySide(panels, 2)));
      results.examples.push({
        task: slot.task,
        caseId: c.id,
        file,
        columns: [
          'input',
          ...(c.target01 ? ['ground truth'] : []),
          ...methods.filter((m) => m.family !== 'reference').map((m) => m.label),
        ],
      });
      examplesPerTask.set(slot.task, (examplesPerTask.get(slot.task) ?? 0) + 1);
      await writeFileAtomic(resultsPath, serializeResults(results));
    }
  }
  results.finishedAt = new Date().toISOString();
  await writeFileAtomic(resultsPath, serializeResults(results));
  await writeReport(o.out, results);
  return results;
}
