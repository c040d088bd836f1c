import type { StableDiffusionBundle } from '../models/bundle.js';
import type { NDArray } from '../runtime/ndarray.js';
import type { Generator } from '../runtime/random.js';
import { createScheduler, type SchedulerName } from '../schedulers/index.js';
import {
  checkGuidance,
  checkImage,
  checkLatents,
  checkSteps,
  checkStrength,
  encodePrompt,
  img2imgTimesteps,
  predictNoise,
  resolveGenerator,
  type ProgressCallback,
} from './common.js';

export interface Img2ImgOptions {
  prompt: string;
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  negativePrompt?: string;
  /** Fraction of the schedule to re-noise and denoise (SDEdit's t0): 0 keeps the input, 1 ignores it. */
  strength?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  seed?: number;
  generator?: Generator;
  /** Explicit noise [1, C, h, w] used to noise the input latents. */
  noise?: NDArray;
  eta?: number;
  scheduler?: SchedulerName;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface Img2ImgResult {
  image: NDArray;
  latents: NDArray;
  seed: number | undefined;
  timesteps: number[];
  notices: string[];
}

/** SDEdit (Meng et al. 2022): noise the input to an intermediate level, then denoise with the prompt. */
export async function img2img(
  bundle: StableDiffusionBundle,
  options: Img2ImgOptions,
): Promise<Img2ImgResult> {
  const strength = options.strength ?? 0.8;
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const guidanceScale = options.guidanceScale ?? 7.5;
  checkStrength(strength);
  checkSteps(numInferenceSteps);
  checkGuidance(guidanceScale);
  checkImage(bundle, options.image);
  const { scheduler, notice } = createScheduler(bundle.schedulerConfig, { override: options.scheduler });
  const { generator, seed } = resolveGenerator(options);

  // 1. Encode the prompt and the input image.
  const embeddings = await encodePrompt(bundle, options.prompt, options.negativePrompt, guidanceScale);
  const initLatents = await (await bundle.vaeEncoder()).encode(options.image);

  // 2. Keep the last `strength` of the schedule and noise the input latents to its first timestep.
  scheduler.setTimesteps(numInferenceSteps);
  const timesteps = img2imgTimesteps(scheduler, numInferenceSteps, strength);
  const noise = options.noise
    ? checkLatents('noise', options.noise, initLatents.shape)
    : generator.randn(initLatents.shape);
  let latents = scheduler.addNoise(initLatents, noise, timesteps[0]);

  // 3. Denoise.
  for (const [i, t] of timesteps.entries()) {
    const modelInput = scheduler.scaleModelInput(latents, t);
    const noisePred = await predictNoise(bundle, modelInput, t, embeddings, guidanceScale);
    latents = scheduler.step(noisePred, t, latents, { eta: options.eta, generator }).prevSample;
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'denoise', step: i + 1, total: timesteps.length });
  }

  // 4. Decode.
  const image = await bundle.vaeDecoder.decode(latents);
  return { image, latents, seed, timesteps, notices: notice ? [notice] : [] };
}
