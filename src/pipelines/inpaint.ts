import type { StableDiffusionBundle } from '../models/bundle.js';
import { NDArray } from '../runtime/ndarray.js';
import type { Generator } from '../runtime/random.js';
import { createScheduler, type SchedulerName } from '../schedulers/index.js';
import { UserError } from '../util/errors.js';
import {
  broadcastMask,
  checkGuidance,
  checkImage,
  checkLatents,
  checkSteps,
  checkStrength,
  encodePrompt,
  img2imgTimesteps,
  maskToLatent,
  predictNoise,
  resolveGenerator,
  type ProgressCallback,
} from './common.js';

export interface InpaintOptions {
  prompt: string;
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  /** Mask [1, 1, H, W] in [0, 1]: white (≥ 0.5) is repainted, black is kept. */
  mask: NDArray;
  negativePrompt?: string;
  /** 1 repaints the masked region from pure noise; lower values keep some of its content. */
  strength?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  seed?: number;
  generator?: Generator;
  /** Explicit noise [1, C, h, w], used for the start and for re-noising the known region. */
  noise?: NDArray;
  eta?: number;
  scheduler?: SchedulerName;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface InpaintResult {
  image: NDArray;
  latents: NDArray;
  seed: number | undefined;
  timesteps: number[];
  /** 'channels' for a 9-channel inpainting UNet, 'blend' for latent blending with a plain UNet. */
  method: 'channels' | 'blend';
  notices: string[];
}

/**
 * Inpainting with either kind of model:
 * - a 9-channel inpainting UNet sees the mask and the masked image's latents as extra input channels;
 * - a plain 4-channel UNet is steered by latent blending: after every step the known region is replaced by
 *   the input's latents noised to the level of that step's result (Lugmayr et al.'s RePaint without resampling,
 *   as diffusers does it).
 */
export async function inpaint(
  bundle: StableDiffusionBundle,
  options: InpaintOptions,
): Promise<InpaintResult> {
  const strength = options.strength ?? 1;
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const guidanceScale = options.guidanceScale ?? 7.5;
  checkStrength(strength);
  checkSteps(numInferenceSteps);
  checkGuidance(guidanceScale);
  const { width, height } = checkImage(bundle, options.image);
  if (options.mask.shape.join(',') !== [1, 1, height, width].join(',')) {
    throw new UserError(
      `the mask must be [1, 1, ${height}, ${width}] to match the image, got [${options.mask.shape.join(', ')}]`,
    );
  }
  const method = bundle.isInpaintingUNet ? 'channels' : 'blend';
  const { scheduler, notice } = createScheduler(bundle.schedulerConfig, { override: options.scheduler });
  const { generator, seed } = resolveGenerator(options);

  // 1. Encode the prompt, the image, and the mask at latent resolution.
  const embeddings = await encodePrompt(bundle, options.prompt, options.negativePrompt, guidanceScale);
  const vaeEncoder = await bundle.vaeEncoder();
  const imageLatents = await vaeEncoder.encode(options.image);
  const [, channels, latentHeight, latentWidth] = imageLatents.shape;
  const latentMask = maskToLatent(options.mask, latentHeight, latentWidth);
  const mask = broadcastMask(latentMask, channels);

  // 2. Timesteps and starting latents.
  scheduler.setTimesteps(numInferenceSteps);
  const timesteps = img2imgTimesteps(scheduler, numInferenceSteps, strength);
  const noise = options.noise
    ? checkLatents('noise', options.noise, imageLatents.shape)
    : generator.randn(imageLatents.shape);
  let latents =
    strength === 1
      ? noise.scale(scheduler.initNoiseSigma)
      : scheduler.addNoise(imageLatents, noise, timesteps[0]);

  // The 9-channel model's conditioning: the binarised mask and the latents of the image with the hole cut out.
  let conditioning: NDArray | undefined;
  if (method === 'channels') {
    const keep = options.mask.map((m) => (m < 0.5 ? 1 : 0));
    const maskedImage = options.image.map((v, i) => v * keep.data[i % keep.size]);
    conditioning = NDArray.concatChannels([latentMask, await vaeEncoder.encode(maskedImage)]);
  }

  // 3. Denoise.
  for (const [i, t] of timesteps.entries()) {
    let modelInput = scheduler.scaleModelInput(latents, t);
    if (conditioning) modelInput = NDArray.concatChannels([modelInput, conditioning]);
    const noisePred = await predictNoise(bundle, modelInput, t, embeddings, guidanceScale);
    latents = scheduler.step(noisePred, t, latents, { eta: options.eta, generator }).prevSample;
    if (method === 'blend') {
      // `latents` is now at the noise level of the next timestep, so the known region is noised to that same
      // level; after the last step it is the clean input latents.
      const known =
        i < timesteps.length - 1 ? scheduler.addNoise(imageLatents, noise, timesteps[i + 1]) : imageLatents;
      latents = latents.map((v, k) => mask.data[k] * v + (1 - mask.data[k]) * known.data[k]);
    }
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'denoise', step: i + 1, total: timesteps.length });
  }

  // 4. Decode.
  const image = await bundle.vaeDecoder.decode(latents);
  return { image, latents, seed, timesteps, method, notices: notice ? [notice] : [] };
}
