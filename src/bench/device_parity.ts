/**
 * `npm run bench -- parity`: the same computations on two devices (default CPU vs WebGPU), compared number for
 * number: text-to-image from fixed latents, DDIM inversion, and a UNet gradient (d loss / d latents). This is
 * the check that the GPU provider gives the same images as the CPU, and the same gradients.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildGradient, loadModel, mseLoss, sessionFromModel } from '../autodiff/index.js';
import { StableDiffusionBundle } from '../models/bundle.js';
import { ddimInversion } from '../pipelines/ddim_inversion.js';
import { textToImage } from '../pipelines/text_to_image.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import { Generator } from '../runtime/random.js';

export interface DeviceRun {
  device: ResolvedDevice;
  image: NDArray;
  latents: NDArray;
  inverted: NDArray;
  gradient: NDArray;
  seconds: { textToImage: number; inversion: number; gradient: number };
}

export async function runOnDevice(model: string, device: ResolvedDevice, steps: number): Promise<DeviceRun> {
  const bundle = await StableDiffusionBundle.load(model, { device });
  const size = bundle.defaultImageSize;
  const latentSize = size / bundle.vaeScaleFactor;
  const gen = new Generator(1234);
  const initLatents = gen.randn([1, bundle.latentChannels, latentSize, latentSize]);
  let t0 = performance.now();
  const t2i = await textToImage(bundle, {
    prompt: 'a photo of a cat and an apple on the grass',
    numInferenceSteps: steps,
    guidanceScale: 7.5,
    latents: initLatents,
  });
  const textToImageSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const inversion = await ddimInversion(bundle, {
    image: t2i.image.map((v) => v * 2 - 1),
    numInferenceSteps: steps,
  });
  const inversionSeconds = (performance.now() - t0) / 1000;
  await bundle.release();

  // Gradient of an MSE on the UNet output with respect to the latents, as DragDiffusion's optimisation needs.
  const unetPath = join(model, 'unet', 'model.onnx');
  const gradient = buildGradient(await loadModel(unetPath), {
    loss: mseLoss('out_sample'),
    wrt: ['sample'],
  });
  const session = await sessionFromModel(gradient.model, { device }, 'gradient');
  const g = new Generator(99);
  const sample = g.randn([2, bundle.unetInChannels, latentSize, latentSize]);
  const context = g.randn([2, 77, await textEncoderWidth(model)]);
  t0 = performance.now();
  const out = await session.run({
    sample,
    timestep: NDArray.full([2], 500),
    encoder_hidden_states: context,
    out_sample_target: g.randn(sample.shape),
  });
  const gradientSeconds = (performance.now() - t0) / 1000;
  await session.release();
  return {
    device,
    image: t2i.image,
    latents: t2i.latents,
    inverted: inversion.latents,
    gradient: out[gradient.gradients.sample],
    seconds: { textToImage: textToImageSeconds, inversion: inversionSeconds, gradient: gradientSeconds },
  };
}

async function textEncoderWidth(model: string): Promise<number> {
  const bundle = await StableDiffusionBundle.load(model, { device: 'cpu' });
  const { inputIds, shape } = bundle.tokenizer.batchEncode(['']);
  const width = (await bundle.textEncoder.encode(inputIds, shape)).shape[2];
  await bundle.release();
  return width;
}

/** max |a − b| / max(1, max |a|): relative to the reference's scale. */
export function relativeDifference(a: NDArray, b: NDArray): number {
  let scale = 1;
  for (const v of a.data) scale = Math.max(scale, Math.abs(v));
  return a.maxAbsDiff(b) / scale;
}
