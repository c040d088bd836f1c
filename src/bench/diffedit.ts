/**
 * DiffEdit on EmojiWorld (issue 4): held-out scenes with ground-truth object-replacement edits, and in the same
 * run on the same scenes, SDEdit over a strength sweep, DiffEdit over an r sweep, DiffEdit without encoding, and
 * inpainting with the ground-truth mask (the upper bound). Writes a table, JSON and trade-off plots.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { maskIoU, psnr } from '../metrics/image.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import type { EmojiJudge } from '../models/judge.js';
import type { PerceptualDistance } from '../metrics/perceptual.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { img2img } from '../pipelines/img2img.js';
import { inpaint } from '../pipelines/inpaint.js';
import { NDArray } from '../runtime/ndarray.js';
import { rgb8ToTensor, saveImage, sideBySide } from '../image/io.js';
import { writeFileAtomic } from '../util/files.js';
import {
  editVocabulary,
  renderScene,
  sampleEdit,
  sampleScene,
  splitSeeds,
  type EditResult,
  type SampleSceneOptions,
} from '../world/index.js';
import { savePlot } from '../image/plot.js';

export interface DiffEditBenchOptions {
  cases: number;
  steps: number;
  out: string;
  seed: number;
  rSweep: number[];
  strengthSweep: number[];
  thresholds: number[];
  /** Examples saved as pictures. */
  examples: number;
  /** Scene options of the world subset the model knows (default the whole world); the image size is the model's. */
  scene?: SampleSceneOptions;
  log: (line: string) => void;
}

interface CaseData {
  edit: EditResult;
  source: NDArray; // [-1, 1]
  source01: NDArray;
  target01: NDArray;
  gtMask: NDArray; // [1,1,H,W] 0/1
}

interface MethodScore {
  method: string;
  family: 'diffedit' | 'sdedit' | 'diffedit-noenc' | 'inpaint-gt' | 'identity';
  parameter?: number;
  maskIoU: number[];
  success: number[];
  backgroundPsnr: number[];
  backgroundPerceptual: number[];
  targetPsnr: number[];
  targetPerceptual: number[];
  seconds: number[];
}

export async function benchDiffEdit(
  bundle: StableDiffusionBundle,
  judge: EmojiJudge | undefined,
  perceptual: PerceptualDistance | undefined,
  options: DiffEditBenchOptions,
): Promise<Record<string, unknown>> {
  const size = Math.min(
    256,
    Math.max(64, bundle.defaultImageSize - (bundle.defaultImageSize % bundle.sizeMultiple)),
  );
  const seeds = splitSeeds('heldout', options.cases, options.seed);
  const scores = new Map<string, MethodScore>();
  const score = (method: string, family: MethodScore['family'], parameter?: number): MethodScore => {
    if (!scores.has(method))
      scores.set(method, {
        method,
        family,
        parameter,
        maskIoU: [],
        success: [],
        backgroundPsnr: [],
        backgroundPerceptual: [],
        targetPsnr: [],
        targetPerceptual: [],
        seconds: [],
      });
    return scores.get(method)!;
  };
  const thresholdIoU = options.thresholds.map(() => [] as number[]);
  const started = performance.now();

  for (const [index, seed] of seeds.entries()) {
    const data = await makeCase(seed, size, options.scene ?? {});
    const { edit } = data;
    const evaluate = async (entry: MethodScore, image: NDArray, seconds: number, mask?: NDArray) => {
      entry.seconds.push(seconds);
      const background = data.gtMask.map((v) => 1 - v);
      entry.backgroundPsnr.push(psnr(image, data.source01, background));
      entry.targetPsnr.push(psnr(image, data.target01));
      if (perceptual) {
        entry.backgroundPerceptual.push(await perceptual.distance(image, data.source01, background));
        entry.targetPerceptual.push(await perceptual.distance(image, data.target01));
      }
      if (mask) entry.maskIoU.push(maskIoU(mask, data.gtMask));
      if (judge) entry.success.push((await editSucceeded(judge, image, edit)) ? 1 : 0);
    };
    const timed = async <T>(run: () => Promise<T>): Promise<[T, number]> => {
      const t0 = performance.now();
      const value = await run();
      return [value, (performance.now() - t0) / 1000];
    };
    await evaluate(score('input (no edit)', 'identity'), data.source01, 0);

    for (const r of options.rSweep) {
      const [result, seconds] = await timed(() =>
        diffEdit(bundle, {
          image: data.source,
          prompt: edit.targetCaption,
          sourcePrompt: edit.sourceCaption,
          strength: r,
          numInferenceSteps: options.steps,
          seed,
        }),
      );
      await evaluate(score(`DiffEdit r=${r}`, 'diffedit', r), result.image, seconds, result.mask);
      if (r === 0.8 || (r === options.rSweep.at(-1) && !options.rSweep.includes(0.8))) {
        options.thresholds.forEach((t, k) =>
          thresholdIoU[k].push(
            maskIoU(
              result.maskMap.map((v) => (v > t ? 1 : 0)),
              data.gtMask,
            ),
          ),
        );
        if (index < options.examples) {
          const overlay = result.mask.map((v) => v);
          await saveImage(
            sideBySide([data.source01, overlay, data.gtMask, result.image, data.target01]),
            join(options.out, `example-${index}.png`),
          );
        }
      }
    }
    {
      const [result, seconds] = await timed(() =>
        diffEdit(bundle, {
          image: data.source,
          prompt: edit.targetCaption,
          sourcePrompt: edit.sourceCaption,
          strength: 0.8,
          encoding: 'noise',
          numInferenceSteps: options.steps,
          seed,
        }),
      );
      await evaluate(
        score('DiffEdit w/o encoding r=0.8', 'diffedit-noenc', 0.8),
        result.image,
        seconds,
        result.mask,
      );
    }
    for (const strength of options.strengthSweep) {
      const [result, seconds] = await timed(() =>
        img2img(bundle, {
          image: data.source,
          prompt: edit.targetCaption,
          strength,
          numInferenceSteps: options.steps,
          seed,
        }),
      );
      await evaluate(score(`SDEdit s=${strength}`, 'sdedit', strength), result.image, seconds);
    }
    {
      const [result, seconds] = await timed(() =>
        inpaint(bundle, {
          image: data.source,
          mask: data.gtMask,
          prompt: edit.targetCaption,
          numInferenceSteps: options.steps,
          seed,
        }),
      );
      await evaluate(score('inpaint, ground-truth mask', 'inpaint-gt'), result.image, seconds, data.gtMask);
    }
    const elapsed = (performance.now() - started) / 1000;
    options.log(
      `case ${index + 1}/${seeds.length} (${edit.instruction}); ${elapsed.toFixed(0)} s elapsed, ~${((elapsed / (index + 1)) * (seeds.length - index - 1)).toFixed(0)} s left`,
    );
  }

  const rows = [...scores.values()].map((s) => ({
    method: s.method,
    family: s.family,
    parameter: s.parameter,
    maskIoU: mean(s.maskIoU),
    success: judge ? mean(s.success) : undefined,
    backgroundPsnr: mean(s.backgroundPsnr.filter(Number.isFinite)),
    backgroundIdentical: s.backgroundPsnr.filter((v) => v === Infinity).length,
    backgroundPerceptual: mean(s.backgroundPerceptual),
    targetPsnr: mean(s.targetPsnr),
    targetPerceptual: mean(s.targetPerceptual),
    secondsPerEdit: mean(s.seconds),
  }));
  const thresholdSweep = options.thresholds.map((t, k) => ({ threshold: t, maskIoU: mean(thresholdIoU[k]) }));
  const report = {
    cases: seeds.length,
    imageSize: size,
    steps: options.steps,
    judge: judge !== undefined,
    rows,
    thresholdSweep,
  };
  await writeFileAtomic(join(options.out, 'results.json'), JSON.stringify(report, null, 2));
  await writeFileAtomic(join(options.out, 'results.md'), markdownTable(report));

  const family = (f: MethodScore['family']) => rows.filter((r) => r.family === f);
  const yOf = (r: (typeof rows)[number]) => (judge ? (r.success ?? NaN) : r.targetPsnr);
  await savePlot(
    {
      title: `Edit ${judge ? 'success' : 'quality'} vs background preservation (${seeds.length} held-out edits)`,
      xLabel: 'background PSNR outside the ground-truth region (dB)',
      yLabel: judge ? 'edit success (judge)' : 'PSNR to the ground-truth edit (dB)',
      series: [
        {
          name: 'DiffEdit (r sweep)',
          line: true,
          points: family('diffedit').map((r) => [r.backgroundPsnr, yOf(r)]),
        },
        {
          name: 'SDEdit (strength sweep)',
          line: true,
          points: family('sdedit').map((r) => [r.backgroundPsnr, yOf(r)]),
        },
        {
          name: 'DiffEdit w/o encoding',
          points: family('diffedit-noenc').map((r) => [r.backgroundPsnr, yOf(r)]),
        },
        { name: 'inpaint, GT mask', points: family('inpaint-gt').map((r) => [r.backgroundPsnr, yOf(r)]) },
      ],
    },
    join(options.out, 'tradeoff.png'),
  );
  await savePlot(
    {
      title: 'DiffEdit mask IoU vs binarisation threshold',
      xLabel: 'threshold',
      yLabel: 'mask IoU with the ground-truth region',
      series: [
        { name: 'DiffEdit mask', line: true, points: thresholdSweep.map((t) => [t.threshold, t.maskIoU]) },
      ],
    },
    join(options.out, 'threshold.png'),
  );
  return report;
}

async function makeCase(seed: number, size: number, sceneOptions: SampleSceneOptions): Promise<CaseData> {
  const scene = sampleScene(seed, { ...sceneOptions, width: size, height: size });
  const edit = await sampleEdit(scene, 'replace', seed, editVocabulary(sceneOptions));
  const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
  const toTensor = (image: Uint8Array, range: '[-1,1]' | '[0,1]') =>
    rgb8ToTensor({ data: image, width: size, height: size }, range);
  return {
    edit,
    source: toTensor(source.image, '[-1,1]'),
    source01: toTensor(source.image, '[0,1]'),
    target01: toTensor(target.image, '[0,1]'),
    gtMask: new NDArray(
      Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
      [1, 1, size, size],
    ),
  };
}

/** Success for a replacement: the judge sees the new object, and no longer sees the replaced class (unless the
 * target scene still contains that class elsewhere). */
async function editSucceeded(judge: EmojiJudge, image: NDArray, edit: EditResult): Promise<boolean> {
  const verdict = await judge.judge(image);
  const targetClasses = new Set(edit.target.objects.map((o) => o.class));
  const added = edit.changed.target.map((i) => edit.target.objects[i].class);
  const removed = edit.changed.source
    .map((i) => edit.source.objects[i].class)
    .filter((c) => !targetClasses.has(c));
  return (
    added.every((c) => verdict.objects.includes(c)) && removed.every((c) => !verdict.objects.includes(c))
  );
}

function mean(values: number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function markdownTable(report: {
  cases: number;
  imageSize: number;
  steps: number;
  judge: boolean;
  rows: Record<string, unknown>[];
  thresholdSweep: { threshold: number; maskIoU: number }[];
}): string {
  const f = (v: unknown, digits = 3) =>
    typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–';
  const lines = [
    `DiffEdit benchmark: ${report.cases} held-out EmojiWorld replacement edits, ${report.imageSize}px, ${report.steps} steps`,
    '',
    '| method | mask IoU | edit success | background PSNR (dB) | background LPIPS-style | PSNR to GT edit (dB) | LPIPS-style to GT edit | s/edit |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.rows.map(
      (r) =>
        `| ${String(r.method)} | ${f(r.maskIoU)} | ${report.judge ? f(r.success) : 'no judge'} | ${f(r.backgroundPsnr, 2)} | ${f(r.backgroundPerceptual, 4)} | ${f(r.targetPsnr, 2)} | ${f(r.targetPerceptual, 4)} | ${f(r.secondsPerEdit, 2)} |`,
    ),
    '',
    '| threshold | mask IoU |',
    '| --- | --- |',
    ...report.thresholdSweep.map((t) => `| ${t.threshold} | ${f(t.maskIoU)} |`),
    '',
  ];
  return lines.join('\n');
}
