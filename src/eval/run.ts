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
import type { SampleSceneOptions } from '../world/scene.js';
import type { EvalMethod } from './methods.js';
import { scoreEdit, type EditScores, type Scorers } from './metrics.js';
import { writeReport } from './report.js';
import { evalCase, SUITE_VERSION, type EvalCase, type EvalTask } from './tasks.js';

export interface EvalRecord {
  caseId: string;
  task: EvalTask;
  method: string;
  instruction: string;
  scores: EditScores;
}

export interface EvalResults {
  suiteVersion: number;
  model: string;
  device: string;
  versions: Record<string, string>;
  settings: { cases: number; tasks: EvalTask[]; imageSize: number; seed: number; dataset?: string };
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
  let results: EvalResults = {
    suiteVersion: SUITE_VERSION,
    model: bundle.dir,
    device: bundle.device,
    versions: o.versions,
    settings: {
      cases: o.cases,
      tasks: [...o.tasks],
      imageSize: size,
      seed: o.seed,
      dataset: o.dataset?.name,
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
      previous = JSON.parse(readFileSync(resultsPath, 'utf8')) as EvalResults;
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
  const slots: { task: EvalTask; id: string; k: number; load: () => Promise<EvalCase> }[] = o.dataset
    ? o.dataset.cases
        .filter((c) => o.tasks.includes(c.task))
        .slice(0, o.cases * o.tasks.length)
        .map((c, k) => ({ task: c.task, id: c.id, k, load: async () => c }))
    : o.tasks.flatMap((task) =>
        Array.from({ length: o.cases }, (_, k) => ({
          task,
          id: `${task}-${k}`,
          k,
          load: () => evalCase(task, k, scene),
        })),
      );
  const applicable = (slot: { task: EvalTask; id: string }, m: EvalMethod) =>
    m.tasks.includes(slot.task) &&
    !(o.dataset !== undefined && (m.needs.includes('drag points') || m.needs.includes('ground truth')));
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
      const image = await method.run(bundle, c, o.seed + slot.k);
      const seconds = (performance.now() - t) / 1000;
      // The ground-truth row's image is the ground-truth column already.
      if (method.family !== 'reference') images.push(image);
      if (already) continue;
      results.records.push({
        caseId: c.id,
        task: slot.task,
        method: method.key,
        instruction: c.instruction,
        scores: await scoreEdit(scorers, c, image, seconds),
      });
      done.add(`${c.id}|${method.key}`);
      o.onProgress?.(++finished, total, `${slot.task} · ${method.label}`);
      await writeFileAtomic(resultsPath, `${JSON.stringify(results, null, 1)}\n`);
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
      await writeFileAtomic(resultsPath, `${JSON.stringify(results, null, 1)}\n`);
    }
  }
  results.finishedAt = new Date().toISOString();
  await writeFileAtomic(resultsPath, `${JSON.stringify(results, null, 1)}\n`);
  await writeReport(o.out, results);
  return results;
}
