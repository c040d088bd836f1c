/**
 * `npm run bench -- diffedit`: DiffEdit against SDEdit and inpainting, as a view of the eval suite (src/eval). The
 * suite's held-out cases of the tasks DiffEdit takes (default replace), DiffEdit over an r sweep and its
 * "w/o encoding" ablation, SDEdit over a strength sweep, inpainting inside the ground-truth region (the upper
 * bound), and the input and ground-truth reference rows, all scored by the suite: success, preservation, fidelity,
 * CLIP, and DiffEdit's mask IoU with the changed region (with its threshold sweep). Prints the table and writes the
 * suite's report plus a success-vs-preservation plot per task.
 */
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parseFraction, parseInteger, parseList, parseNumber } from '../cli/options.js';
import { evalMethods, TEXT_TASKS } from '../eval/methods.js';
import type { EditScores } from '../eval/metrics.js';
import { maskThresholdTable, methodTable, tradeoffPlot } from '../eval/report.js';
import type { EvalTask } from '../eval/tasks.js';
import { savePlot } from '../image/plot.js';
import { UserError } from '../util/errors.js';
import {
  addEvalViewOptions,
  printEvalView,
  runEvalView,
  type EvalViewFlags,
  type EvalViewRun,
} from './eval_view.js';

/** The columns of the view's table. */
const COLUMNS: readonly (keyof EditScores)[] = [
  'maskIoU',
  'success',
  'preservationPsnr',
  'preservationLpips',
  'fidelityPsnr',
  'fidelityLpips',
  'clipScore',
  'directionalClip',
  'seconds',
];

interface DiffEditViewFlags extends EvalViewFlags {
  tasks: EvalTask[];
  steps: number;
  guidance: number;
  ratios: number[];
  withoutEncoding: number[];
  strengths: number[];
}

/** The view's text: one table per task, the mask threshold sweep, and where the plots are. */
export function diffEditTable({ results, summary, details }: EvalViewRun, plots: readonly string[]): string {
  const s = results.settings;
  return [
    `DiffEdit benchmark (eval suite v${results.suiteVersion}): ${s.cases} held-out EmojiWorld cases per task, ` +
      `${s.imageSize}px, model ${results.model} (${results.device})`,
    '',
    ...s.tasks.flatMap((task) => [`Task ${task}:`, '', methodTable(results, summary, task, COLUMNS)]),
    'Mask IoU of the mask each method edited inside against the changed region (DiffEdit infers its own; the ' +
      'inpainting row is given the true one). Preservation is outside the changed region, against the input; ' +
      'fidelity inside it, against the ground truth. PSNR averages cap identical pixels at 60 dB.',
    '',
    maskThresholdTable(results, details),
    ...(plots.length > 0 ? [`plots: ${plots.join(', ')}`] : []),
  ].join('\n');
}

/** `npm run bench -- diffedit [options]`. */
export async function diffEditBenchMain(
  argv: readonly string[],
  defaultModel: string,
  write: (text: string) => void = (text) => process.stdout.write(text),
): Promise<EvalViewRun> {
  const program = addEvalViewOptions(new Command('bench diffedit'), {
    cases: 200,
    examples: 8,
    out: 'bench-results/diffedit',
  })
    .option(
      '--tasks <list>',
      `tasks, of those DiffEdit takes: ${TEXT_TASKS.join(', ')}`,
      parseList((t: string) => {
        if (!(TEXT_TASKS as readonly string[]).includes(t))
          throw new InvalidArgumentError(`DiffEdit does not take task '${t}'; use ${TEXT_TASKS.join(', ')}`);
        return t as EvalTask;
      }),
      ['replace'],
    )
    .option('--steps <n>', 'DDIM steps of every method', parseInteger('--steps', 1, 1000), 50)
    .option('--guidance <scale>', 'classifier-free guidance', parseNumber('--guidance', 0, 100), 7.5)
    .option(
      '--ratios <list>',
      'DiffEdit encoding ratios r',
      parseList(parseFraction('--ratios')),
      [0.5, 0.6, 0.7, 0.8, 0.9],
    )
    .option(
      '--without-encoding <list>',
      "ratios of the 'DiffEdit w/o encoding' ablation (noise instead of DDIM encoding); '' for none",
      parseList(parseFraction('--without-encoding')),
      [0.8],
    )
    .option(
      '--strengths <list>',
      'SDEdit strengths',
      parseList(parseFraction('--strengths')),
      [0.3, 0.5, 0.7, 0.9],
    );
  program.parse([...argv], { from: 'user' });
  const flags = program.opts<DiffEditViewFlags>();
  if (flags.tasks.length === 0) throw new UserError('--tasks: give at least one task');
  const run = await runEvalView(
    {
      name: 'bench diffedit',
      tasks: flags.tasks,
      methods: evalMethods({
        steps: flags.steps,
        guidance: flags.guidance,
        strengths: flags.strengths,
        ratios: flags.ratios,
        ratiosWithoutEncoding: flags.withoutEncoding,
        dragLoraSteps: 0,
        dragSteps: 0,
      }),
    },
    flags,
    defaultModel,
  );
  const plots: string[] = [];
  for (const task of flags.tasks) {
    const spec = tradeoffPlot(run.results, run.summary, task);
    if (!spec) continue;
    const path = join(flags.out, `tradeoff-${task}.png`);
    await savePlot(spec, path);
    plots.push(path);
  }
  await printEvalView(diffEditTable(run, plots), flags, write);
  return run;
}
