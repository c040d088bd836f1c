/**
 * Number-for-number parity of each pipeline with the PyTorch reference (training/reference/pipelines.py, written
 * from docs/pipelines.md) on the tiny random-weight bundles, given the same initial latents / noise.
 * Regenerate the fixtures with `/usr/bin/python3 training/fixtures/make_tiny_sd.py`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { ddimInversion } from '../../src/pipelines/ddim_inversion.js';
import { img2img } from '../../src/pipelines/img2img.js';
import { inpaint } from '../../src/pipelines/inpaint.js';
import { textToImage } from '../../src/pipelines/text_to_image.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import type { SchedulerName } from '../../src/schedulers/index.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const PARITY = join(FIXTURES, 'parity');

interface CaseInputs {
  case: string;
  pipeline: 'text_to_image' | 'image_to_image' | 'inpaint' | 'ddim_inversion';
  bundle: string;
  prompt: string;
  negative_prompt: string | null;
  num_inference_steps: number;
  guidance_scale: number;
  strength?: number;
  width: number;
  height: number;
  scheduler: SchedulerName | null;
  eta: number;
  input_ids: number[][];
  files: Record<string, string>;
  expected: { timesteps?: number[]; inversion_timesteps?: number[] };
}

const index = JSON.parse(readFileSync(join(PARITY, 'index.json'), 'utf8')) as {
  cases: Record<string, unknown>;
};
const bundles = new Map<string, Promise<StableDiffusionBundle>>();
function bundle(name: string): Promise<StableDiffusionBundle> {
  if (!bundles.has(name)) {
    bundles.set(
      name,
      StableDiffusionBundle.load(join(FIXTURES, 'bundles', name), { device: 'cpu', intraOpNumThreads: 1 }),
    );
  }
  return bundles.get(name)!;
}
afterAll(async () => {
  for (const b of bundles.values()) await (await b).release();
});

/** Largest error relative to the reference's scale: latents of the tiny random models reach |x| ≈ 40. */
function relativeError(actual: NDArray, expected: NDArray): number {
  expect(actual.shape).toEqual(expected.shape);
  let scale = 1;
  for (const v of expected.data) scale = Math.max(scale, Math.abs(v));
  return actual.maxAbsDiff(expected) / scale;
}

const errors: Record<string, Record<string, number>> = {};
afterAll(() => {
  // Printed so the figures can be quoted; the assertions below are what guards them.
  console.log('parity (max |Δ| / max(1, max |ref|)):', JSON.stringify(errors, null, 1));
});

describe.each(Object.keys(index.cases))('parity: %s', (name) => {
  it('matches the PyTorch reference', async () => {
    const dir = join(PARITY, name);
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as CaseInputs;
    const load = (key: string) => readNpy(join(dir, inputs.files[key]));
    const b = await bundle(inputs.bundle);
    const scheduler =
      inputs.scheduler === null || inputs.scheduler === 'ddim-inverse' ? undefined : inputs.scheduler;
    const common = {
      prompt: inputs.prompt,
      negativePrompt: inputs.negative_prompt ?? undefined,
      numInferenceSteps: inputs.num_inference_steps,
      guidanceScale: inputs.guidance_scale,
      eta: inputs.eta,
      scheduler,
    };

    // The tokenizer must produce the ids the reference used ([negative, prompt] under guidance).
    const texts = inputs.guidance_scale > 1 ? [inputs.negative_prompt ?? '', inputs.prompt] : [inputs.prompt];
    const { inputIds } = b.tokenizer.batchEncode(texts);
    expect(Array.from(inputIds)).toEqual(inputs.input_ids.flat());

    const measured: Record<string, number> = {};
    let latents: NDArray;
    let image: NDArray;
    let timesteps: number[];
    switch (inputs.pipeline) {
      case 'text_to_image': {
        const r = await textToImage(b, {
          ...common,
          width: inputs.width,
          height: inputs.height,
          latents: await load('init_latents'),
        });
        ({ latents, image, timesteps } = r);
        break;
      }
      case 'image_to_image': {
        const r = await img2img(b, {
          ...common,
          image: await load('image'),
          strength: inputs.strength,
          noise: await load('noise'),
        });
        ({ latents, image, timesteps } = r);
        break;
      }
      case 'inpaint': {
        const r = await inpaint(b, {
          ...common,
          image: await load('image'),
          mask: await load('mask'),
          strength: inputs.strength,
          noise: await load('noise'),
        });
        expect(r.method).toBe(b.isInpaintingUNet ? 'channels' : 'blend');
        ({ latents, image, timesteps } = r);
        break;
      }
      case 'ddim_inversion': {
        const r = await ddimInversion(b, { ...common, image: await load('image'), reconstruct: true });
        timesteps = r.timesteps;
        expect(timesteps).toEqual(inputs.expected.inversion_timesteps);
        const stacked = NDArray.concat(r.intermediates);
        const reference = await load('inverted_latents');
        measured.inverted = relativeError(stacked, reference.reshape(stacked.shape));
        latents = r.reconstructionLatents!;
        image = r.reconstruction!;
        break;
      }
    }
    if (inputs.expected.timesteps) expect(timesteps).toEqual(inputs.expected.timesteps);
    measured.latents = relativeError(latents, await load('latents'));
    measured.image = relativeError(image, await load('output_image'));
    errors[name] = measured;
    for (const [what, error] of Object.entries(measured)) {
      expect(error, `${name}: ${what}`).toBeLessThan(1e-4);
    }
  });
});

describe('fp16 bundle', () => {
  it('runs the txt2img_ddim case in half precision close to the fp32 reference', async () => {
    const dir = join(PARITY, 'txt2img_ddim');
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as CaseInputs;
    const b = await bundle('tiny-sd-fp16');
    const r = await textToImage(b, {
      prompt: inputs.prompt,
      negativePrompt: inputs.negative_prompt ?? undefined,
      numInferenceSteps: inputs.num_inference_steps,
      guidanceScale: inputs.guidance_scale,
      scheduler: 'ddim',
      latents: await readNpy(join(dir, 'init_latents.npy')),
    });
    const latentError = relativeError(r.latents, await readNpy(join(dir, 'latents.npy')));
    const imageError = relativeError(r.image, await readNpy(join(dir, 'output_image.npy')));
    errors['txt2img_ddim (fp16 bundle)'] = { latents: latentError, image: imageError };
    // Half precision carries ~3 significant digits through 8 guided steps.
    expect(latentError).toBeLessThan(1e-2);
    expect(imageError).toBeLessThan(2e-2);
  });
});
