/**
 * `npm run bench -- autodiff`: forward time, forward+backward time and peak memory of the UNet's gradient model
 * (built by src/autodiff) at several latent sizes, one child process per (device, size, variant) so peak RSS is
 * per configuration.
 *
 * Two gradient variants, the two that EditKit's methods need:
 * - `latents`: d loss / d sample (DragDiffusion's latent optimisation);
 * - `lora`: d loss / d LoRA factors on the attention projections (DragDiffusion's identity LoRA, DiffusionCLIP).
 *
 * What the backward pass stores: the gradient model is one ONNX graph, forward then backward, so ORT keeps every
 * forward activation that a backward rule reads (conv inputs, softmax outputs, norm statistics) alive until its
 * rule runs; nothing is recomputed. Activation memory therefore grows linearly with the number of latent pixels
 * (h·w), except attention probabilities, which grow with (h·w)²: at SD sizes those dominate.
 */
import { performance } from 'node:perf_hooks';
import {
  addLora,
  buildGradient,
  foldInitializerCasts,
  loadModel,
  mseLoss,
  sessionFromModel,
} from '../autodiff/index.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import { Generator } from '../runtime/random.js';
import { ModelSession, type Feed } from '../runtime/session.js';

export interface AutodiffBenchRequest {
  unetPath: string;
  device: ResolvedDevice;
  latentSize: number;
  variant: 'latents' | 'lora';
  repeats: number;
  crossAttentionDim: number;
  latentChannels: number;
}

export interface AutodiffBenchResult {
  device: ResolvedDevice;
  latentSize: number;
  variant: 'latents' | 'lora';
  buildSeconds: number;
  forwardMs: number;
  forwardBackwardMs: number;
  /** (forward+backward − forward) / forward. */
  backwardOverForward: number;
  gradientNodes: number;
  forwardNodes: number;
  peakRssMiB: number;
}

export async function benchAutodiffOne(request: AutodiffBenchRequest): Promise<AutodiffBenchResult> {
  const buildStart = performance.now();
  let model = await loadModel(request.unetPath);
  const forwardNodes = model.graph?.node?.length ?? 0;
  let wrt = ['sample'];
  if (request.variant === 'lora') {
    // Weights stored as float16 + Cast must become plain initializers for the rewrite to find them.
    foldInitializerCasts(model);
    // B starts non-zero so that the gradient of A is not trivially zero.
    const lora = addLora(model, { rank: 16, initB: 'normal' });
    model = lora.model;
    wrt = lora.parameters;
  }
  const gradient = buildGradient(model, { loss: mseLoss('out_sample'), wrt, outputs: [] });
  const backward = await sessionFromModel(gradient.model, { device: request.device }, 'gradient');
  const buildSeconds = (performance.now() - buildStart) / 1000;

  const forward = await ModelSession.create(request.unetPath, { device: request.device });
  const gen = new Generator(0);
  const s = request.latentSize;
  const sample = gen.randn([2, request.latentChannels, s, s]);
  const timestep = NDArray.full([2], 500);
  const context = gen.randn([2, 77, request.crossAttentionDim]);
  const feeds: Record<string, Feed> = { sample, timestep, encoder_hidden_states: context };
  const forwardFeeds = Object.fromEntries(Object.entries(feeds).filter(([name]) => forward.hasInput(name)));
  const gradientFeeds: Record<string, Feed> = {
    ...forwardFeeds,
    out_sample_target: gen.randn(sample.shape),
  };
  const time = async (run: () => Promise<unknown>) => {
    for (let i = 0; i < 2; i++) await run();
    const times: number[] = [];
    for (let i = 0; i < request.repeats; i++) {
      const t0 = performance.now();
      await run();
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
  };
  const forwardMs = await time(() => forward.run(forwardFeeds));
  const forwardBackwardMs = await time(() => backward.run(gradientFeeds));
  await forward.release();
  await backward.release();
  return {
    device: request.device,
    latentSize: s,
    variant: request.variant,
    buildSeconds,
    forwardMs,
    forwardBackwardMs,
    backwardOverForward: (forwardBackwardMs - forwardMs) / forwardMs,
    gradientNodes: gradient.model.graph?.node?.length ?? 0,
    forwardNodes,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}
