import type { StableDiffusionBundle } from '../models/bundle.js';
import type { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { createInverseScheduler, createScheduler } from '../schedulers/index.js';
import {
  checkGuidance,
  checkImage,
  checkLatents,
  checkSteps,
  checkStrength,
  encodePrompt,
  predictNoise,
  type ProgressCallback,
} from './common.js';

export interface DdimInversionOptions {
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  /** Prompt that conditions the inversion (default: empty, i.e. unconditional). */
  prompt?: string;
  negativePrompt?: string;
  numInferenceSteps?: number;
  /** Guidance during inversion; 1 (none) keeps DDIM's deterministic path invertible. */
  guidanceScale?: number;
  /** Stop after this fraction of the schedule (DiffEdit's encoding ratio r, DragDiffusion's t). Default 1. */
  inversionStrength?: number;
  /** Decode the inverted latents back with DDIM and return the reconstruction. */
  reconstruct?: boolean;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface DdimInversionResult {
  /** The latents at the last inverted timestep. */
  latents: NDArray;
  /** Every latent along the way: [x_0 (encoded input), x_t1, …, x_tk]. */
  intermediates: NDArray[];
  /** Inverse timesteps used, ascending; intermediates[i + 1] is at timesteps[i]. */
  timesteps: number[];
  reconstruction?: NDArray;
  reconstructionLatents?: NDArray;
}

/**
 * Deterministic DDIM inversion (Song et al. 2021, Dhariwal & Nichol 2021): run the DDIM ODE backwards from the
 * encoded image to noise, so that DDIM sampling from the result reproduces the image.
 */
export async function ddimInversion(
  bundle: StableDiffusionBundle,
  options: DdimInversionOptions,
): Promise<DdimInversionResult> {
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const guidanceScale = options.guidanceScale ?? 1;
  const fraction = options.inversionStrength ?? 1;
  checkSteps(numInferenceSteps);
  checkGuidance(guidanceScale);
  checkImage(bundle, options.image);
  checkStrength(fraction);
  const inverse = createInverseScheduler(bundle.schedulerConfig);
  inverse.setTimesteps(numInferenceSteps);
  // floor, as diffusers' get_timesteps: the forward pass over the same tail of the schedule must line up step for step.
  const stepsToRun = Math.min(Math.floor(numInferenceSteps * fraction), numInferenceSteps);
  const timesteps = inverse.timesteps.slice(0, stepsToRun);
  if (timesteps.length === 0) {
    throw new UserError(
      `inversion strength ${fraction} with ${numInferenceSteps} steps inverts no step; raise it or --steps`,
    );
  }

  // 1. Encode the prompt and the image.
  const embeddings = await encodePrompt(bundle, options.prompt ?? '', options.negativePrompt, guidanceScale);
  let latents = await (await bundle.vaeEncoder()).encode(options.image);
  const intermediates = [latents];

  // 2. Invert, keeping every intermediate latent.
  const total = timesteps.length + (options.reconstruct ? timesteps.length : 0);
  for (const [i, t] of timesteps.entries()) {
    const noisePred = await predictNoise(
      bundle,
      inverse.scaleModelInput(latents, t),
      t,
      embeddings,
      guidanceScale,
    );
    latents = inverse.step(noisePred, t, latents).prevSample;
    intermediates.push(latents);
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'invert', step: i + 1, total });
  }
  const result: DdimInversionResult = { latents, intermediates, timesteps };
  if (!options.reconstruct) return result;

  // 3. Optionally walk back down the same timesteps with forward DDIM and decode.
  result.reconstructionLatents = await ddimDecode(bundle, latents, {
    numInferenceSteps,
    startIndex: numInferenceSteps - timesteps.length,
    embeddings,
    guidanceScale,
    onStep: (i) => options.onProgress?.({ stage: 'reconstruct', step: timesteps.length + i + 1, total }),
  });
  result.reconstruction = await bundle.vaeDecoder.decode(result.reconstructionLatents);
  return result;
}

/** Deterministic DDIM sampling from `latents` over the tail of the schedule starting at `startIndex`. */
export async function ddimDecode(
  bundle: StableDiffusionBundle,
  latents: NDArray,
  options: {
    numInferenceSteps: number;
    startIndex: number;
    embeddings: Awaited<ReturnType<typeof encodePrompt>>;
    guidanceScale: number;
    onStep?: (i: number) => void;
  },
): Promise<NDArray> {
  const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
  scheduler.setTimesteps(options.numInferenceSteps);
  let x = checkLatents('latents', latents, latents.shape);
  for (const [i, t] of scheduler.timesteps.slice(options.startIndex).entries()) {
    const noisePred = await predictNoise(bundle, x, t, options.embeddings, options.guidanceScale);
    x = scheduler.step(noisePred, t, x, { eta: 0 }).prevSample;
    options.onStep?.(i);
  }
  return x;
}
