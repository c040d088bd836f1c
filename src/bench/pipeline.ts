import { performance } from 'node:perf_hooks';
import { StableDiffusionBundle } from '../models/bundle.js';
import { encodePrompt } from '../pipelines/common.js';
import { textToImage } from '../pipelines/text_to_image.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import { Generator } from '../runtime/random.js';

export interface PipelineBenchOptions {
  model: string;
  device: ResolvedDevice;
  steps: number;
  unetRepeats: number;
  threads?: number;
}

export interface PipelineBenchResult {
  device: ResolvedDevice;
  model: string;
  imageSize: number;
  loadSeconds: number;
  /** Median latency of one guided UNet evaluation (batch 2: [uncond, cond]). */
  unetStepMs: number;
  unetStepMinMs: number;
  endToEndSeconds: number;
  steps: number;
  /** Peak resident memory of the benchmark process (host memory; GPU memory is not visible to ORT's Node API). */
  peakRssMiB: number;
}

/** Measures one device in this process; the caller runs one process per device so peak RSS is per device. */
export async function benchPipeline(options: PipelineBenchOptions): Promise<PipelineBenchResult> {
  const loadStart = performance.now();
  const bundle = await StableDiffusionBundle.load(options.model, {
    device: options.device,
    intraOpNumThreads: options.threads,
  });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const size = bundle.defaultImageSize;
  const latentSize = size / bundle.vaeScaleFactor;
  const embeddings = await encodePrompt(bundle, 'a photo of a cat and an apple on the grass', '', 7.5);
  const sample = new Generator(0).randn([2, bundle.unetInChannels, latentSize, latentSize]);
  const context = NDArray.concat([embeddings.uncond ?? embeddings.cond, embeddings.cond]);

  // Warm-up runs let the provider compile kernels and allocate; they are not timed.
  for (let i = 0; i < 2; i++) await bundle.unet.predict(sample, 500, context);
  const times: number[] = [];
  for (let i = 0; i < options.unetRepeats; i++) {
    const t0 = performance.now();
    await bundle.unet.predict(sample, 999 - i, context);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);

  const e2eStart = performance.now();
  if (bundle.isInpaintingUNet) throw new Error('benchmark a text-to-image bundle (4-channel UNet)');
  await textToImage(bundle, {
    prompt: 'a photo of a cat and an apple on the grass',
    numInferenceSteps: options.steps,
    guidanceScale: 7.5,
    seed: 0,
  });
  const endToEndSeconds = (performance.now() - e2eStart) / 1000;
  await bundle.release();
  return {
    device: options.device,
    model: bundle.dir,
    imageSize: size,
    loadSeconds,
    unetStepMs: times[Math.floor(times.length / 2)],
    unetStepMinMs: times[0],
    endToEndSeconds,
    steps: options.steps,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}
