/**
 * The end-to-end rows of `npm run bench -- vs-torch` (bundled size): one whole DiffEdit edit (50 steps) and one whole
 * DragDiffusion edit, run by EditKit's own pipelines on the bundled model's pipeline (tokenizer, text encoder,
 * scheduler) with the UNet and VAE replaced by the random-weight exports that the PyTorch side also runs. The run
 * returns how many network calls of each kind it made (and their batch sizes), so that the PyTorch side
 * (training/bench/vs_torch.py `time --what diffedit|drag --counts …`) makes exactly the same calls.
 */
import { copyFileSync, cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StableDiffusionBundle } from '../models/bundle.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { dragDiffusion, inversionStepCount } from '../pipelines/drag/index.js';
import { loadImage } from '../image/io.js';

export type EndToEndWhat = 'diffedit' | 'drag';

/** What the PyTorch side must repeat, call for call. */
export interface EndToEndCounts {
  what: EndToEndWhat;
  /** DiffEdit: mask draws (UNet batch 2), DDIM inversion steps (batch 1), decoding steps (batch 2, CFG). */
  maskDraws?: number;
  inversionSteps?: number;
  decodingSteps?: number;
  /** Drag: LoRA steps × batch, inversion steps, drag gradient runs, denoising steps (batch 2, mutual attention). */
  loraSteps?: number;
  loraBatch?: number;
  dragRuns?: number;
  denoisingSteps?: number;
}

/** A pipeline folder: models/emoji-ldm's text side and scheduler, with `dir`'s UNet and VAE exports. */
function benchBundle(dir: string, pipelineDir: string): string {
  const out = join(dir, 'pipeline');
  if (!existsSync(join(out, 'model_index.json'))) {
    cpSync(pipelineDir, out, { recursive: true });
    copyFileSync(join(dir, 'unet.onnx'), join(out, 'unet', 'model.onnx'));
    copyFileSync(join(dir, 'vae_encoder.onnx'), join(out, 'vae_encoder', 'model.onnx'));
    copyFileSync(join(dir, 'vae_decoder.onnx'), join(out, 'vae_decoder', 'model.onnx'));
  }
  return out;
}

export async function measureEndToEnd(
  dir: string,
  what: EndToEndWhat,
  threads: number,
  repeats: number,
  pipelineDir: string,
  imagePath: string,
): Promise<{ what: EndToEndWhat; ms: number; peakRssMiB: number; counts: EndToEndCounts }> {
  const bundle = await StableDiffusionBundle.load(benchBundle(dir, pipelineDir), {
    device: 'cpu',
    intraOpNumThreads: threads,
  });
  const size = bundle.defaultImageSize;
  const image = (await loadImage(imagePath, { width: size, height: size })).tensor;
  let counts: EndToEndCounts = { what };
  const once = async () => {
    if (what === 'diffedit') {
      const steps = 50;
      const strength = 0.8;
      await diffEdit(bundle, {
        image,
        prompt: 'a cat and a ball on grass',
        sourcePrompt: 'a dog and a ball on grass',
        numInferenceSteps: steps,
        strength,
        seed: 0,
      });
      const k = inversionStepCount(steps, strength);
      counts = { what, maskDraws: 10, inversionSteps: k, decodingSteps: k };
    } else {
      // Handles far from their targets, so the optimisation runs its whole budget on random weights too.
      const result = await dragDiffusion(bundle, {
        image,
        handles: [[12, 12]],
        targets: [[52, 52]],
        prompt: 'a cat and a ball on grass',
        seed: 0,
        intraOpNumThreads: threads,
      });
      counts = {
        what,
        loraSteps: 80,
        loraBatch: 4,
        inversionSteps: inversionStepCount(50, 0.7),
        dragRuns: result.stats.drag.runs,
        denoisingSteps: inversionStepCount(50, 0.7),
      };
    }
  };
  await once();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await once();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  await bundle.release();
  return {
    what,
    ms: times[Math.floor(times.length / 2)],
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    counts,
  };
}
