/**
 * What `editkit eval` measures for each edit, against the case's ground truth (docs/eval.md explains each):
 *  - success: the judge finds every object class of the target scene, none the edit removed, and the target's
 *    background;
 *  - preservation, outside the changed region: PSNR, SSIM and the LPIPS-style distance to the input;
 *  - fidelity, inside the region: PSNR and the LPIPS-style distance to the ground-truth result;
 *  - CLIP score (image ↔ target caption) and directional CLIP score (image change ↔ caption change);
 *  - seconds per edit.
 */
import { imageToPng } from '../image/io.js';
import { psnr, ssim } from '../metrics/image.js';
import type { PerceptualDistance } from '../metrics/perceptual.js';
import { cosineRows, directionalSimilarity, type ClipModel } from '../models/clip.js';
import type { EmojiJudge } from '../models/judge.js';
import { NDArray } from '../runtime/ndarray.js';
import type { LmmScorer } from './lmm.js';
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
  seconds: number;
}

export const METRICS: readonly {
  key: keyof EditScores;
  label: string;
  better: 'higher' | 'lower';
  digits: number;
}[] = [
  { key: 'success', label: 'success', better: 'higher', digits: 2 },
  { key: 'preservationPsnr', label: 'preservation PSNR dB', better: 'higher', digits: 2 },
  { key: 'preservationSsim', label: 'preservation SSIM', better: 'higher', digits: 3 },
  { key: 'preservationLpips', label: 'preservation LPIPS-style', better: 'lower', digits: 3 },
  { key: 'fidelityPsnr', label: 'fidelity PSNR dB (to GT)', better: 'higher', digits: 2 },
  { key: 'fidelityLpips', label: 'fidelity LPIPS-style (to GT)', better: 'lower', digits: 3 },
  { key: 'clipScore', label: 'CLIP score', better: 'higher', digits: 3 },
  { key: 'directionalClip', label: 'directional CLIP', better: 'higher', digits: 3 },
  { key: 'lmmScore', label: 'LMM score (1–10)', better: 'higher', digits: 2 },
  { key: 'seconds', label: 's/edit', better: 'lower', digits: 2 },
];

export interface Scorers {
  judge: EmojiJudge;
  clip: ClipModel;
  perceptual: PerceptualDistance;
  lmm?: LmmScorer;
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
  image: NDArray,
  seconds: number,
): Promise<EditScores> {
  const outside = c.region.map((v) => 1 - v);
  const [edited, source] = [await s.clip.embedImages(image), await s.clip.embedImages(c.source01)];
  const texts = await s.clip.embedTexts([c.sourceCaption, c.targetCaption]);
  const d = texts.shape[1];
  const sourceText = new NDArray(texts.data.slice(0, d), [1, d]);
  const targetText = new NDArray(texts.data.slice(d, 2 * d), [1, d]);
  return {
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
    seconds,
  };
}
