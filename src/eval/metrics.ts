/**
 * What `editkit eval` measures for each edit, against the case's ground truth (docs/eval.md explains each):
 *  - success: the judge finds every object class of the target scene, none the edit removed, and the target's
 *    background;
 *  - preservation, outside the changed region: PSNR, SSIM and the LPIPS-style distance to the input;
 *  - fidelity, inside the region: PSNR and the LPIPS-style distance to the ground-truth result;
 *  - CLIP score (image ↔ target caption) and directional CLIP score (image change ↔ caption change);
 *  - mask IoU, where the method edits inside a mask of its own (DiffEdit infers one): against the changed region;
 *  - on cases with drag points, DragBench's measures (drag_metrics.ts): Mean Distance on DIFT and on the judge's
 *    features, the moved sprite's distance from its true place, Image Fidelity, CLIP similarity to the input;
 *    and a drag method's own account (handles reached, iterations);
 *  - seconds per edit.
 */
import { imageToPng } from '../image/io.js';
import { maskIoU, psnr, ssim } from '../metrics/image.js';
import type { PerceptualDistance } from '../metrics/perceptual.js';
import { cosineRows, directionalSimilarity, type ClipModel } from '../models/clip.js';
import type { EmojiJudge } from '../models/judge.js';
import type { DiftFeaturizer } from '../pipelines/drag/dift.js';
import { NDArray } from '../runtime/ndarray.js';
import { measureDrag } from './drag_metrics.js';
import type { LmmScorer } from './lmm.js';
import type { MethodOutput } from './methods.js';
import type { EvalCase } from './tasks.js';

export interface EditScores {
  success: number;
  preservationPsnr: number;
  preservationSsim: number;
  preservationLpips: number;
  fidelityPsnr: number;
  fidelityLpips: number;
  clipScore: number;
  directionalClip: number;
  /** The survey's LMM score (1–10), when an endpoint is configured; NaN otherwise. */
  lmmScore: number;
  /** IoU of the method's own mask with the changed region; NaN for methods without one. */
  maskIoU: number;
  /** Cases with drag points only (NaN elsewhere): DragBench's Mean Distance (px) on DIFT and on judge features. */
  meanDistance: number;
  judgeMeanDistance: number;
  /** The moved sprite's distance from its true place (px), by template matching on the ground truth. */
  spriteDistance: number;
  /** DragBench's Image Fidelity (1 − LPIPS-style, whole image) and CLIP image similarity, both to the input. */
  imageFidelity: number;
  clipSimilarity: number;
  /** A drag method's own account: 1 if every handle reached its target, and the iterations it took. */
  dragReached: number;
  dragIterations: number;
  seconds: number;
}

/** What summaries need besides the scores, kept per edit in results.json. */
export interface EditDetails {
  /** Per drag point, the distance of the handle's match to its target: Mean Distance pools these over cases. */
  pointDistances?: { dift: number[]; judge: number[] };
  /** Mask IoU with the changed region at each of MASK_THRESHOLDS, from the method's soft mask map. */
  maskIoUByThreshold?: number[];
  /** Time and peak memory per stage, where the method reports them. */
  stages?: Record<string, { seconds: number; peakRssMiB: number }>;
}

/** Binarisation thresholds of the mask sweep (DiffEdit's map is binarised at 0.5). */
export const MASK_THRESHOLDS: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

export interface MetricInfo {
  key: keyof EditScores;
  label: string;
  better: 'higher' | 'lower';
  digits: number;
  /** Averaged over every drag point of every case (DragBench's pooling), not over cases. */
  pooled?: keyof NonNullable<EditDetails['pointDistances']>;
}

export const METRICS: readonly MetricInfo[] = [
  { key: 'success', label: 'success', better: 'higher', digits: 2 },
  { key: 'preservationPsnr', label: 'preservation PSNR dB', better: 'higher', digits: 2 },
  { key: 'preservationSsim', label: 'preservation SSIM', better: 'higher', digits: 3 },
  { key: 'preservationLpips', label: 'preservation LPIPS-style', better: 'lower', digits: 3 },
  { key: 'fidelityPsnr', label: 'fidelity PSNR dB (to GT)', better: 'higher', digits: 2 },
  { key: 'fidelityLpips', label: 'fidelity LPIPS-style (to GT)', better: 'lower', digits: 3 },
  { key: 'clipScore', label: 'CLIP score', better: 'higher', digits: 3 },
  { key: 'directionalClip', label: 'directional CLIP', better: 'higher', digits: 3 },
  { key: 'lmmScore', label: 'LMM score (1–10)', better: 'higher', digits: 2 },
  { key: 'maskIoU', label: 'mask IoU (to the changed region)', better: 'higher', digits: 3 },
  { key: 'meanDistance', label: 'Mean Distance (DIFT) px', better: 'lower', digits: 2, pooled: 'dift' },
  {
    key: 'judgeMeanDistance',
    label: 'Mean Distance (judge features) px',
    better: 'lower',
    digits: 2,
    pooled: 'judge',
  },
  { key: 'spriteDistance', label: 'moved sprite to its true place px', better: 'lower', digits: 2 },
  { key: 'imageFidelity', label: 'Image Fidelity (1 − LPIPS-style)', better: 'higher', digits: 4 },
  { key: 'clipSimilarity', label: 'CLIP similarity to the input', better: 'higher', digits: 4 },
  { key: 'dragReached', label: 'handles reached', better: 'higher', digits: 2 },
  { key: 'dragIterations', label: 'drag iterations', better: 'lower', digits: 1 },
  { key: 'seconds', label: 's/edit', better: 'lower', digits: 2 },
];

export interface Scorers {
  judge: EmojiJudge;
  clip: ClipModel;
  perceptual: PerceptualDistance;
  lmm?: LmmScorer;
  /** The DIFT matcher of Mean Distance (on the bundle under test); without it that measure is NaN. */
  dift?: DiftFeaturizer;
}

/** Whether the judge sees the target scene in `image`. */
export async function judgeSuccess(judge: EmojiJudge, image: NDArray, c: EvalCase): Promise<boolean> {
  if (!c.sourceScene || !c.targetScene) throw new Error(`case ${c.id} has no scene to judge against`);
  const verdict = await judge.judge(image);
  const wanted = new Set(c.targetScene.objects.map((o) => o.class));
  const removed = c.sourceScene.objects.map((o) => o.class).filter((k) => !wanted.has(k));
  return (
    [...wanted].every((k) => verdict.objects.includes(k)) &&
    removed.every((k) => !verdict.objects.includes(k)) &&
    verdict.background === c.targetScene.background.name
  );
}

export async function scoreEdit(
  s: Scorers,
  c: EvalCase,
  output: MethodOutput,
  seconds: number,
): Promise<{ scores: EditScores; details: EditDetails }> {
  const { image } = output;
  const outside = c.region.map((v) => 1 - v);
  const [edited, source] = [await s.clip.embedImages(image), await s.clip.embedImages(c.source01)];
  const texts = await s.clip.embedTexts([c.sourceCaption, c.targetCaption]);
  const d = texts.shape[1];
  const sourceText = new NDArray(texts.data.slice(0, d), [1, d]);
  const targetText = new NDArray(texts.data.slice(d, 2 * d), [1, d]);
  if (s.dift && output.drag?.supervisedTensor === s.dift.tensor)
    throw new Error(
      `the DIFT matcher would grade with the tensor the drag supervised (${s.dift.tensor}); choose another DIFT block`,
    );
  const drag = c.drag ? await measureDrag({ ...c, drag: c.drag }, image, s) : undefined;
  const mean = (values: readonly number[]) =>
    values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
  const scores: EditScores = {
    // Without a ground truth (a user's dataset) the judge and the fidelity have nothing to compare with: NaN, n/a.
    success: c.targetScene ? ((await judgeSuccess(s.judge, image, c)) ? 1 : 0) : NaN,
    preservationPsnr: psnr(image, c.source01, outside),
    preservationSsim: ssim(image, c.source01, outside),
    preservationLpips: await s.perceptual.distance(image, c.source01, outside),
    fidelityPsnr: c.target01 ? psnr(image, c.target01, c.region) : NaN,
    fidelityLpips: c.target01 ? await s.perceptual.distance(image, c.target01, c.region) : NaN,
    clipScore: cosineRows(edited, targetText)[0],
    // Undefined when the caption does not change (a move keeps the caption): n/a rather than 0.
    directionalClip:
      c.sourceCaption === c.targetCaption
        ? NaN
        : directionalSimilarity(source, edited, sourceText, targetText)[0],
    lmmScore: s.lmm
      ? (await s.lmm.score(c.instruction, await imageToPng(c.source01), await imageToPng(image))).score
      : NaN,
    maskIoU: output.mask ? maskIoU(output.mask, c.region) : NaN,
    meanDistance: drag ? mean(drag.diftDistances) : NaN,
    judgeMeanDistance: drag ? mean(drag.judgeDistances) : NaN,
    spriteDistance: drag?.spriteDistance ?? NaN,
    imageFidelity: drag?.imageFidelity ?? NaN,
    clipSimilarity: drag ? cosineRows(source, edited)[0] : NaN,
    dragReached: output.drag ? (output.drag.reached ? 1 : 0) : NaN,
    dragIterations: output.drag?.iterations ?? NaN,
    seconds,
  };
  const { maskMap } = output;
  const details: EditDetails = {
    ...(drag ? { pointDistances: { dift: drag.diftDistances, judge: drag.judgeDistances } } : {}),
    ...(maskMap
      ? {
          maskIoUByThreshold: MASK_THRESHOLDS.map((t) =>
            maskIoU(
              maskMap.map((v) => (v > t ? 1 : 0)),
              c.region,
            ),
          ),
        }
      : {}),
    ...(output.drag ? { stages: output.drag.stages } : {}),
  };
  return { scores, details };
}
