/**
 * Editing with DiffusionCLIP models: invert the input with the original model to t₀ (S_for steps), generate back
 * with the fine-tuned model(s) (S_gen steps), decode. Several fine-tuned models mix their noise predictions in one
 * sampling run (the paper's multi-attribute transfer): ε = Σ γᵢ · ε_θ̂ᵢ(x_t, t), with γᵢ the given weights; where
 * they sum to less than 1, the original model takes the rest (a weight below 1 on one delta is a weaker edit).
 */
import { join } from 'node:path';
import { foldInitializerCasts, loadModel, type ModelProto } from '../../autodiff/index.js';
import type { StableDiffusionBundle } from '../../models/bundle.js';
import { UNet } from '../../models/unet.js';
import type { NDArray } from '../../runtime/ndarray.js';
import { createScheduler } from '../../schedulers/index.js';
import { UserError } from '../../util/errors.js';
import { checkImage, encodePrompt, type ProgressCallback } from '../common.js';
import { sessionFromModel } from '../drag/unet_models.js';
import { applyDelta } from './delta.js';
import { alphaBar, ddimMove, diffusionClipTimesteps } from './schedule.js';

export interface WeightedUnet {
  /** A fine-tuned UNet graph (weights merged). */
  unet: ModelProto;
  weight: number;
}

export interface DiffusionClipEditOptions {
  /** Input [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  models: readonly WeightedUnet[];
  prompt?: string;
  /** Default 40% of the training schedule, as in fine-tuning. */
  t0?: number;
  /** S_for and S_gen when editing (defaults 40 and 40: more generation steps than in training, as the paper). */
  inversionSteps?: number;
  generationSteps?: number;
  intraOpNumThreads?: number;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

/** Mixing weights γ: as given when they sum to at least 1 (normalised), else with the original model taking the rest. */
export function mixingWeights(weights: readonly number[]): { tuned: number[]; original: number } {
  if (weights.length === 0) throw new UserError('give at least one fine-tuned model (--delta)');
  for (const w of weights) {
    if (!(w > 0) || !Number.isFinite(w)) throw new UserError(`a delta's weight must be positive, got ${w}`);
  }
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum >= 1) return { tuned: weights.map((w) => w / sum), original: 0 };
  return { tuned: [...weights], original: 1 - sum };
}

/** The edited image, [1, 3, H, W] in [0, 1]. */
export async function diffusionClipEdit(
  bundle: StableDiffusionBundle,
  options: DiffusionClipEditOptions,
): Promise<NDArray> {
  checkImage(bundle, options.image);
  const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
  const alphas = scheduler.alphasCumprod;
  const t0 = options.t0 ?? Math.round(0.4 * alphas.length);
  if (!(Number.isInteger(t0) && t0 >= 1 && t0 < alphas.length))
    throw new UserError(`t₀ must be an integer timestep from 1 to ${alphas.length - 1}, got ${t0}`);
  const inversionSeq = diffusionClipTimesteps(t0, options.inversionSteps ?? 40);
  const generationSeq = diffusionClipTimesteps(t0, options.generationSteps ?? 40);
  const gamma = mixingWeights(options.models.map((m) => m.weight));
  const embedding = (await encodePrompt(bundle, options.prompt ?? '', undefined, 1)).cond;
  const total = inversionSeq.length - 1 + generationSeq.length;
  let done = 0;
  const settings = { device: bundle.device, intraOpNumThreads: options.intraOpNumThreads };
  const unets: UNet[] = [];
  try {
    for (const m of options.models)
      unets.push(new UNet(await sessionFromModel(m.unet, settings, 'dclip_unet')));
    let x = await (await bundle.vaeEncoder()).encode(options.image);
    for (let k = 1; k < inversionSeq.length; k++) {
      const eps = await bundle.unet.predict(x, inversionSeq[k - 1], embedding);
      x = ddimMove(x, eps, alphaBar(alphas, inversionSeq[k - 1]), alphaBar(alphas, inversionSeq[k]));
      options.signal?.throwIfAborted();
      options.onProgress?.({ stage: 'invert', step: ++done, total });
    }
    for (let k = generationSeq.length - 1; k >= 0; k--) {
      const t = generationSeq[k];
      let eps =
        gamma.original > 0 ? (await bundle.unet.predict(x, t, embedding)).scale(gamma.original) : undefined;
      for (const [i, unet] of unets.entries()) {
        const e = (await unet.predict(x, t, embedding)).scale(gamma.tuned[i]);
        eps = eps ? eps.axpby(1, e, 1) : e;
      }
      x = ddimMove(x, eps!, alphaBar(alphas, t), alphaBar(alphas, k > 0 ? generationSeq[k - 1] : -1));
      options.signal?.throwIfAborted();
      options.onProgress?.({ stage: 'generate', step: ++done, total });
    }
    return await bundle.vaeDecoder.decode(x);
  } finally {
    for (const u of unets) await u.session.release();
  }
}

/** Fine-tuned UNets from delta files (`weight` each), for {@link diffusionClipEdit}. */
export async function loadDeltas(
  bundle: StableDiffusionBundle,
  deltas: readonly { path: string; weight: number }[],
): Promise<WeightedUnet[]> {
  const base = await loadModel(join(bundle.dir, 'unet', 'model.onnx'));
  foldInitializerCasts(base);
  const out: WeightedUnet[] = [];
  for (const d of deltas) out.push({ unet: await applyDelta(base, d.path), weight: d.weight });
  return out;
}
