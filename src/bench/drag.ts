/**
 * `npm run bench -- drag`: DragDiffusion, as a view of the eval suite (src/eval): the suite's action cases (held-out
 * EmojiWorld moves and resizes, with drag points and ground truth), or a DragBench folder (`--dataset`), with
 * DragDiffusion and the undragged input (the baseline its Mean Distance is cut from) and the ground truth (the
 * ceiling), scored by the suite: DragBench's Mean Distance on DIFT and on the judge's features, the moved sprite's
 * distance from its true place, Image Fidelity and CLIP similarity (src/eval/drag_metrics.ts), preservation and
 * fidelity, handles reached, and time and peak memory per stage.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { LORA_INIT_A, type LoraInitA } from '../autodiff/index.js';
import { parseInteger, parseList } from '../cli/options.js';
import { dragBenchEvalCases } from '../eval/datasets.js';
import { evalMethods } from '../eval/methods.js';
import type { EditScores } from '../eval/metrics.js';
import { methodTable, stageTable } from '../eval/report.js';
import { worldTasksOf } from '../eval/tasks.js';
import type { EditTask } from '../world/edits.js';
import { UserError } from '../util/errors.js';
import {
  addEvalViewOptions,
  printEvalView,
  runEvalView,
  type EvalViewFlags,
  type EvalViewRun,
} from './eval_view.js';

const COLUMNS: readonly (keyof EditScores)[] = [
  'meanDistance',
  'judgeMeanDistance',
  'spriteDistance',
  'imageFidelity',
  'clipSimilarity',
  'preservationPsnr',
  'fidelityPsnr',
  'dragReached',
  'dragIterations',
  'seconds',
];

interface DragViewFlags extends EvalViewFlags {
  tasks: EditTask[];
  dataset?: string;
  loraSteps: number;
  loraInit: LoraInitA;
  dragSteps: number;
  steps: number;
  diftEnsemble: number;
  diftBlock?: number;
}

/** The view's text: the table, the cuts against the undragged input, the stages. */
export function dragTable({ results, summary, details }: EvalViewRun): string {
  const s = results.settings;
  const input = summary.input?.action;
  const drag = summary.dragdiffusion?.action;
  const cut = (key: keyof EditScores) => {
    const before = input?.[key];
    const after = drag?.[key];
    return before !== undefined && after !== undefined && Number.isFinite(after / before)
      ? `${Number((100 * (1 - after / before)).toFixed(1)).toFixed(1)} %` // a cut that rounds to zero reads 0.0 %, not -0.0 %
      : 'n/a';
  };
  const dift = s.scoring?.dift as { tensor?: string; timestep?: number; ensemble?: number } | undefined;
  const source = s.dataset
    ? `cases of the DragBench folder ${s.dataset}`
    : `held-out EmojiWorld ${(s.variants?.action ?? worldTasksOf('action')).join('/')} cases of the action task`;
  return [
    `DragDiffusion benchmark (eval suite v${results.suiteVersion}): ${source}, ${s.imageSize}px, ` +
      `model ${results.model} (${results.device}), LoRA init ${String(results.methods.find((m) => m.key === 'dragdiffusion')?.settings.loraInit ?? 'diffusers')}`,
    '',
    methodTable(results, summary, 'action', COLUMNS),
    `Cut vs the undragged input: Mean Distance (DIFT) ${cut('meanDistance')}, (judge) ${cut('judgeMeanDistance')}, ` +
      `moved sprite to its true place ${cut('spriteDistance')}.`,
    '',
    `Mean Distance is pooled over every point of every case, as DragBench does. DIFT features: \`${dift?.tensor ?? '?'}\` ` +
      `of the base UNet (no LoRA), t = ${dift?.timestep ?? '?'}, ${dift?.ensemble ?? '?'} noise draws; the suite refuses ` +
      "a DIFT tensor the drag supervised. The second Mean Distance matches on the EmojiWorld judge's features. " +
      "Image Fidelity is DragBench's 1 − LPIPS between input and result, whole image, with the LPIPS-style distance on " +
      "the judge's features (no pretrained VGG/AlexNet here); CLIP similarity is the cosine of the input's and the " +
      "result's image embeddings (the bundled CLIP). Preservation PSNR is outside the edit's mask; fidelity PSNR " +
      "inside it, against the ground truth. '–': not measurable (a DragBench folder has no ground truth).",
    '',
    stageTable(results, details),
  ].join('\n');
}

/** `npm run bench -- drag [options]`. */
export async function dragBenchMain(
  argv: readonly string[],
  defaultModel: string,
  write: (text: string) => void = (text) => process.stdout.write(text),
): Promise<EvalViewRun> {
  const actionEdits = worldTasksOf('action');
  const program = addEvalViewOptions(new Command('bench drag'), {
    cases: 20,
    examples: 4,
    out: 'bench-results/drag',
  })
    .option(
      '--tasks <list>',
      `which action cases: ${actionEdits.join(', ')} (the suite alternates them)`,
      parseList((t: string) => {
        if (!(actionEdits as readonly string[]).includes(t))
          throw new InvalidArgumentError(`'${t}' is not an action case; use ${actionEdits.join(', ')}`);
        return t as EditTask;
      }),
      [...actionEdits],
    )
    .option(
      '--dataset <dir>',
      'run on cases in DragBench layout (<case>/original_image.png, meta_data.pkl) instead of EmojiWorld; --cases caps them',
    )
    .option('--lora-steps <n>', 'LoRA fine-tuning steps', parseInteger('--lora-steps', 0, 10000), 80)
    .addOption(
      new Option('--lora-init <init>', "LoRA A init: 'diffusers' N(0, 1/rank²) or 'fan-in' N(0, 1/fan_in)")
        .choices(LORA_INIT_A)
        .default('diffusers'),
    )
    .option('--drag-steps <n>', 'latent optimisation iterations', parseInteger('--drag-steps', 0, 10000), 80)
    .option('--steps <n>', 'DDIM steps over the whole schedule', parseInteger('--steps', 1, 1000), 50)
    .option(
      '--dift-ensemble <n>',
      'noise draws averaged by the DIFT matcher',
      parseInteger('--dift-ensemble', 1, 64),
      8,
    )
    .option(
      '--dift-block <n>',
      'up block of the DIFT features (default 1, or the last where 1 is supervised)',
      parseInteger('--dift-block', 0, 16),
    );
  program.parse([...argv], { from: 'user' });
  const flags = program.opts<DragViewFlags>();
  if (flags.tasks.length === 0) throw new UserError('--tasks: give move and/or resize');
  const dataset = flags.dataset;
  const run = await runEvalView(
    {
      name: 'bench drag',
      tasks: ['action'],
      variants: dataset || flags.tasks.length === actionEdits.length ? undefined : { action: flags.tasks },
      methods: evalMethods({
        steps: flags.steps,
        guidance: 1,
        strengths: [],
        ratios: [],
        dragLoraSteps: flags.loraSteps,
        dragSteps: flags.dragSteps,
        dragLoraInit: flags.loraInit,
        dragInferenceSteps: flags.steps,
        threads: flags.threads,
      }),
      dift: { ensemble: flags.diftEnsemble, block: flags.diftBlock },
      dataset: dataset
        ? async (bundle) => ({
            name: dataset,
            cases: await dragBenchEvalCases(dataset, {
              multiple: bundle.sizeMultiple,
              size: flags.size,
              limit: flags.cases,
            }),
          })
        : undefined,
    },
    flags,
    defaultModel,
  );
  await printEvalView(dragTable(run), flags, write);
  return run;
}
