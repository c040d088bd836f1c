import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { pieBenchEvalCases } from '../../eval/datasets.js';
import type { ModelProto } from '../../autodiff/index.js';
import { LmmScorer } from '../../eval/lmm.js';
import { loadDeltas } from '../../pipelines/diffusion_clip/edit.js';
import { evalMethods } from '../../eval/methods.js';
import { runEval } from '../../eval/run.js';
import { summarize } from '../../eval/report.js';
import { loadScorers, runVersions } from '../../eval/setup.js';
import { EVAL_TASKS, type EvalTask } from '../../eval/tasks.js';
import { UserError } from '../../util/errors.js';
import { modelWorldSubset } from '../../world/subsets.js';
import { createProgress, shouldShowProgress } from '../progress.js';
import {
  addRuntimeOptions,
  parseFraction,
  parseInteger,
  parseList,
  parseNumber,
  type RuntimeOptions,
} from '../options.js';
import { report, withBundle } from '../run_context.js';

interface EvalCliOptions extends RuntimeOptions {
  report: string;
  cases: number;
  tasks: EvalTask[];
  methods?: string[];
  steps: number;
  guidance: number;
  strengths: number[];
  ratios: number[];
  dragLoraSteps: number;
  dragSteps: number;
  examples: number;
  seed: number;
  resume: boolean;
  judge?: string;
  clip?: string;
  dataset?: string;
  lmmEndpoint?: string;
  lmmModel?: string;
  lmmKeyEnv?: string;
  lmmWeights?: number[];
  diffusionClip?: [EvalTask, string][];
}

function task(v: string): EvalTask {
  if (!(EVAL_TASKS as readonly string[]).includes(v))
    throw new InvalidArgumentError(`unknown task '${v}'; use ${EVAL_TASKS.join(', ')}`);
  return v as EvalTask;
}

export function evalCommand(): Command {
  const command = new Command('eval')
    .description(
      "EditEval-style benchmark: the survey's 7 editing tasks on EmojiWorld, every method, scored against the ground truth",
    )
    .requiredOption('--report <dir>', 'where report.html, results.json, results.csv and summary.md go')
    .option('--cases <n>', 'held-out cases per task', parseInteger('--cases', 1, 1000), 20)
    .option('--tasks <list>', `tasks (default all: ${EVAL_TASKS.join(',')})`, parseList(task), [
      ...EVAL_TASKS,
    ])
    .option(
      '--methods <list>',
      'method keys to run (default all), e.g. sdedit-0.6,diffedit-0.5,inpaint-gt,dragdiffusion',
      parseList(String),
    )
    .option(
      '--steps <n>',
      'denoising steps of SDEdit, inpainting and DiffEdit',
      parseInteger('--steps', 1, 1000),
      25,
    )
    .option('--guidance <scale>', 'classifier-free guidance', parseNumber('--guidance', 0, 100), 5)
    .option('--strengths <list>', 'SDEdit strengths', parseList(parseFraction('--strengths')), [0.6])
    .option('--ratios <list>', 'DiffEdit encoding ratios r', parseList(parseFraction('--ratios')), [0.5])
    .option(
      '--drag-lora-steps <n>',
      'DragDiffusion LoRA steps',
      parseInteger('--drag-lora-steps', 0, 1000),
      40,
    )
    .option(
      '--drag-steps <n>',
      'DragDiffusion latent optimisation steps',
      parseInteger('--drag-steps', 0, 1000),
      40,
    )
    .option('--examples <n>', 'example grids per task', parseInteger('--examples', 0, 100), 2)
    .option('--seed <n>', 'base seed of the methods', parseInteger('--seed', 0, 2 ** 31), 0)
    .option('--resume', 'continue the run whose results.json is in --report', false)
    .option(
      '--dataset <dir>',
      'run on a PIE-Bench folder (mapping_file.json, annotation_images/) instead of EmojiWorld; no ground truth',
    )
    .option(
      '--lmm-endpoint <url>',
      "the survey's LMM score through an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (off by default)",
    )
    .option('--lmm-model <name>', 'the model the endpoint serves (with --lmm-endpoint)')
    .option(
      '--lmm-key-env <var>',
      'environment variable holding the API key (default OPENAI_API_KEY, if set)',
    )
    .option('--lmm-weights <list>', 'weights of accuracy, preservation, quality, realism', parseList(Number))
    .option(
      '--diffusion-clip <task=delta>',
      'add DiffusionCLIP on a task with a delta from clip-finetune (repeatable), e.g. background=snow.safetensors',
      (value: string, previous: [EvalTask, string][] = []) => {
        const [name, path] = value.split('=');
        if (!path) throw new InvalidArgumentError(`--diffusion-clip '${value}': give TASK=FILE.safetensors`);
        return [...previous, [task(name), path] as [EvalTask, string]];
      },
    )
    .option('--judge <dir>', 'judge (default: emoji-judge beside the model)')
    .option('--clip <dir>', 'CLIP (default: emoji-clip beside the model)');
  addRuntimeOptions(command);
  return command.action(async (options: EvalCliOptions) => {
    for (const [, path] of options.diffusionClip ?? [])
      if (!existsSync(path)) throw new UserError(`--diffusion-clip: no file '${path}'`);
    const methods = (diffusionClip?: Partial<Record<EvalTask, ModelProto>>) =>
      evalMethods({
        diffusionClip,
        steps: options.steps,
        guidance: options.guidance,
        strengths: options.strengths,
        ratios: options.ratios,
        dragLoraSteps: options.dragLoraSteps,
        dragSteps: options.dragSteps,
      });
    if ((options.lmmEndpoint === undefined) !== (options.lmmModel === undefined))
      throw new UserError('--lmm-endpoint and --lmm-model go together');
    const keyEnv = options.lmmKeyEnv ?? 'OPENAI_API_KEY';
    if (options.lmmKeyEnv && !process.env[options.lmmKeyEnv])
      throw new UserError(`--lmm-key-env: the environment variable ${options.lmmKeyEnv} is not set`);
    const lmm = options.lmmEndpoint
      ? new LmmScorer({
          endpoint: options.lmmEndpoint,
          model: options.lmmModel!,
          apiKey: process.env[keyEnv],
          weights: options.lmmWeights,
        })
      : undefined;
    const keys = methods()
      .map((m) => m.key)
      .concat(options.diffusionClip ? ['diffusionclip'] : []);
    if (options.tasks.length === 0) throw new UserError('--tasks: give at least one task');
    const unknown = (options.methods ?? []).filter((k) => !keys.includes(k));
    if (unknown.length > 0)
      throw new UserError(`--methods: unknown ${unknown.join(', ')}; available: ${keys.join(', ')}`);
    const { result, seconds, device, model } = await withBundle(options, 'eval', async (bundle) => {
      const dataset = options.dataset
        ? { name: options.dataset, cases: await pieBenchEvalCases(options.dataset, bundle.defaultImageSize) }
        : undefined;
      if (dataset && dataset.cases.length === 0)
        throw new UserError(`'${options.dataset}' has no case of the seven tasks`);
      const deltas: Partial<Record<EvalTask, ModelProto>> = {};
      for (const [t, path] of options.diffusionClip ?? [])
        deltas[t] = (await loadDeltas(bundle, [{ path, weight: 1 }]))[0].unet;
      const beside = (name: string) => join(dirname(bundle.dir), name);
      const scorers = await loadScorers(bundle, {
        judge: { dir: options.judge ?? beside('emoji-judge'), flag: '--judge' },
        clip: { dir: options.clip ?? beside('emoji-clip'), flag: '--clip' },
        // DragBench's Mean Distance on the action task (its cases have drag points)
        dift: options.tasks.includes('action') ? { intraOpNumThreads: options.threads } : undefined,
        lmm,
      });
      const all = methods(deltas);
      const chosen = options.methods ? all.filter((m) => options.methods!.includes(m.key)) : all;
      const progress = createProgress({ enabled: shouldShowProgress(options.json), label: 'eval' });
      let started = false;
      try {
        return await runEval(bundle, scorers, {
          tasks: options.tasks,
          cases: options.cases,
          methods: chosen,
          scene: {
            ...modelWorldSubset(bundle.dir).scene,
            width: bundle.defaultImageSize,
            height: bundle.defaultImageSize,
          },
          out: options.report,
          seed: options.seed,
          examples: options.examples,
          resume: options.resume,
          versions: runVersions(),
          onProgress: (done, total) => {
            if (!started) {
              progress.stage('eval', total);
              started = true;
              for (let i = 0; i < done; i++) progress.tick();
            } else progress.tick();
          },
          log: (line) => process.stderr.write(`${line}\n`),
        });
      } finally {
        progress.stop();
        await scorers.release();
      }
    });
    const summary = summarize(result);
    report(
      options.json,
      {
        command: 'eval',
        report: join(options.report, 'report.html'),
        edits: result.records.length,
        summary,
        device,
        model,
        seconds,
      },
      `wrote ${join(options.report, 'report.html')} (${result.records.length} edits, ${options.tasks.length} tasks × ${result.methods.length} methods, ${device}, ${seconds.toFixed(0)} s)`,
    );
  });
}
