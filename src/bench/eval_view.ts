/**
 * `bench diffedit` and `bench drag` are views of the eval suite (src/eval): each is an eval run restricted to some
 * methods, tasks and settings, through the suite's runner and scorers, printed as the view's table. This module
 * holds what the views share: their common flags and running the suite for them.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { bundledModelDir, parseInteger } from '../cli/options.js';
import type { EvalMethod } from '../eval/methods.js';
import { summarize, summarizeDetails, type DetailSummary, type Summary } from '../eval/report.js';
import { runEval, type EvalOptions, type EvalResults } from '../eval/run.js';
import { loadScorers, runVersions } from '../eval/setup.js';
import type { EvalCase } from '../eval/tasks.js';
import { StableDiffusionBundle } from '../models/bundle.js';
import type { DiftOptions } from '../pipelines/drag/dift.js';
import { parseDevice } from '../runtime/device.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { resolveWorldSubset } from '../world/subsets.js';

export interface EvalViewFlags {
  model?: string;
  device: string;
  threads?: number;
  judge?: string;
  clip?: string;
  cases: number;
  seed: number;
  examples: number;
  subset?: string;
  size?: number;
  out: string;
  resume: boolean;
  json: boolean;
}

/** The flags of every view; `defaults` are the view's own. */
export function addEvalViewOptions(
  command: Command,
  defaults: { cases: number; examples: number; out: string },
): Command {
  // Commander's own errors (a bad flag) are thrown rather than exiting, so that a caller (a test) survives them;
  // bench/main.ts turns them into the exit code.
  return command
    .exitOverride()
    .option('--model <dir>', 'model bundle (default: the bundled model, else the tiny test bundle)')
    .option('--device <name>', 'cpu|webgpu|cuda|auto', 'auto')
    .option('--threads <n>', 'CPU threads per session', parseInteger('--threads', 1, 1024))
    .option(
      '--judge <dir>',
      "judge for success and the LPIPS-style distances (default: emoji-judge beside the model, else the bundled one's)",
    )
    .option(
      '--clip <dir>',
      "CLIP for the CLIP scores (default: emoji-clip beside the model, else the bundled one's)",
    )
    .option(
      '--cases <n>',
      'cases per task: the suite’s first N',
      parseInteger('--cases', 1, 1000),
      defaults.cases,
    )
    .option(
      '--seed <n>',
      'base seed of the methods (case k runs with seed + k; the cases are the suite’s fixed list)',
      parseInteger('--seed', 0, 2 ** 31),
      0,
    )
    .option(
      '--examples <n>',
      'example grids per task',
      parseInteger('--examples', 0, 1000),
      defaults.examples,
    )
    .option('--subset <name>', 'EmojiWorld subset of the scenes (default: the one the model was trained on)')
    .option('--size <px>', "image size (default: the model's)", parseInteger('--size', 8, 4096))
    .option(
      '--out <dir>',
      'where results.json/csv, summary.json/md, report.html, results.md and images go',
      defaults.out,
    )
    .option('--resume', 'continue the run whose results.json is in --out (default: start afresh)', false)
    .option('--json', 'print summary.json on stdout instead of the table', false);
}

export interface EvalView {
  /** For messages: `bench diffedit`. */
  name: string;
  tasks: EvalOptions['tasks'];
  variants?: EvalOptions['variants'];
  /** The suite's methods; the view keeps those that take one of its tasks. */
  methods: readonly EvalMethod[];
  /** Mean Distance's DIFT matcher, for views with drag points. */
  dift?: DiftOptions;
  /** Cases read from files instead of EmojiWorld's suite. */
  dataset?: (bundle: StableDiffusionBundle) => Promise<{ name: string; cases: readonly EvalCase[] }>;
}

export interface EvalViewRun {
  results: EvalResults;
  summary: Summary;
  details: DetailSummary;
}

/** Run `view` through the suite's runner with `flags`, logging progress on stderr. */
export async function runEvalView(
  view: EvalView,
  flags: EvalViewFlags,
  defaultModel: string,
): Promise<EvalViewRun> {
  const modelDir = flags.model ?? defaultModel;
  const subset = resolveWorldSubset(flags.subset, modelDir);
  const multiple = StableDiffusionBundle.sizeMultipleFromConfig(modelDir);
  if (flags.size !== undefined && multiple !== undefined && flags.size % multiple !== 0)
    throw new UserError(`--size must be a multiple of ${multiple} for this model, got ${flags.size}`);
  const methods = view.methods.filter((m) => m.tasks.some((t) => view.tasks.includes(t)));
  const bundle = await StableDiffusionBundle.load(modelDir, {
    device: parseDevice(flags.device),
    intraOpNumThreads: flags.threads,
  });
  // The scoring networks beside the model, else the bundled ones (a DragBench run on another model still gets
  // the LPIPS-style distance, the second Mean Distance and the CLIP similarity).
  const scorerDir = (name: string) => {
    const beside = join(dirname(bundle.dir), name);
    return existsSync(beside) ? beside : join(dirname(bundledModelDir()), name);
  };
  let scorers: Awaited<ReturnType<typeof loadScorers>> | undefined;
  try {
    const dataset = view.dataset ? await view.dataset(bundle) : undefined;
    if (dataset && dataset.cases.length === 0)
      throw new UserError(`${view.name}: no case in '${dataset.name}'`);
    scorers = await loadScorers(bundle, {
      judge: { dir: flags.judge ?? scorerDir('emoji-judge'), flag: '--judge' },
      clip: { dir: flags.clip ?? scorerDir('emoji-clip'), flag: '--clip' },
      dift: view.dift ? { intraOpNumThreads: flags.threads, ...view.dift } : undefined,
    });
    // A bench run starts afresh, as the old benches did, unless it is told to resume.
    if (!flags.resume) await rm(join(flags.out, 'results.json'), { force: true });
    const size = flags.size ?? bundle.defaultImageSize;
    const started = performance.now();
    let lastLog = 0;
    const results = await runEval(bundle, scorers, {
      tasks: view.tasks,
      variants: view.variants,
      dataset,
      cases: flags.cases,
      methods,
      scene: { ...subset.scene, width: size, height: size },
      out: flags.out,
      seed: flags.seed,
      examples: flags.examples,
      resume: flags.resume,
      versions: runVersions(),
      onProgress: (done, total, label) => {
        const now = performance.now();
        if (done > 0 && done < total && now - lastLog < 10_000) return;
        lastLog = now;
        const elapsed = (now - started) / 1000;
        const left = done > 0 ? `, ~${((elapsed / done) * (total - done)).toFixed(0)} s left` : '';
        process.stderr.write(
          `${view.name}: ${done}/${total} edits (${label}); ${elapsed.toFixed(0)} s${left}\n`,
        );
      },
      log: (line) => process.stderr.write(`${line}\n`),
    });
    return { results, summary: summarize(results), details: summarizeDetails(results) };
  } finally {
    await scorers?.release();
    await bundle.release();
  }
}

/** Print the view's table (or, with --json, summary.json) and keep the table as results.md. */
export async function printEvalView(
  text: string,
  flags: EvalViewFlags,
  write: (text: string) => void,
): Promise<void> {
  await writeFileAtomic(join(flags.out, 'results.md'), `${text}\n`);
  write(flags.json ? await readFile(join(flags.out, 'summary.json'), 'utf8') : `${text}\n`);
}
