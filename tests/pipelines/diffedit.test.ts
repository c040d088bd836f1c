import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { diffEdit, inferMask } from '../../src/pipelines/diffedit.js';
import { ddimInversion } from '../../src/pipelines/ddim_inversion.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
let bundle: StableDiffusionBundle;
let image: NDArray;
beforeAll(async () => {
  bundle = await StableDiffusionBundle.load(join(FIXTURES, 'bundles', 'tiny-sd'), {
    device: 'cpu',
    intraOpNumThreads: 1,
  });
  image = await readNpy(join(FIXTURES, 'parity', 'img2img_ddim', 'image.npy'));
});
afterAll(() => bundle.release());

const base = {
  prompt: 'a photo of a dog on the grass',
  sourcePrompt: 'a photo of a cat on the grass',
  numInferenceSteps: 10,
  seed: 5,
};

describe('DiffEdit mask', () => {
  it('is a normalised, clamped, channel- and draw-averaged |ε_Q − ε_R| map', async () => {
    const x0 = await (await bundle.vaeEncoder()).encode(image);
    const map = await inferMask(bundle, x0, {
      query: base.prompt,
      reference: base.sourcePrompt,
      maskStrength: 0.5,
      maskDraws: 4,
      clampRatio: 3,
      numInferenceSteps: 10,
      generator: new Generator(1),
    });
    expect(map.shape).toEqual([1, 1, 8, 8]);
    const values = Array.from(map.data);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThanOrEqual(1);
    // Normalised by 3 × mean: the mean of the unclamped map is 1/3 of the scale, so the clamped map's mean ≤ 1/3.
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    expect(mean).toBeLessThanOrEqual(1 / 3 + 1e-6);
    expect(mean).toBeGreaterThan(0.1);

    // Independent recomputation for one draw with the same noise, straight from the UNet.
    const single = await inferMask(bundle, x0, {
      query: base.prompt,
      reference: base.sourcePrompt,
      maskStrength: 0.5,
      maskDraws: 1,
      clampRatio: 1e9,
      numInferenceSteps: 10,
      generator: new Generator(2),
    });
    const t = 401; // 10 steps, strength 0.5: timesteps[5] of [901, 801, …, 1]
    const noise = new Generator(2).randn(x0.shape);
    const { createScheduler } = await import('../../src/schedulers/index.js');
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    scheduler.setTimesteps(10);
    const xt = scheduler.addNoise(x0, noise, t);
    const { inputIds, shape } = bundle.tokenizer.batchEncode([base.sourcePrompt, base.prompt]);
    const [r, q] = (await bundle.textEncoder.encode(inputIds, shape)).chunk(2);
    const epsR = await bundle.unet.predict(xt, t, r);
    const epsQ = await bundle.unet.predict(xt, t, q);
    const raw = new Float32Array(64);
    for (let c = 0; c < 4; c++)
      for (let p = 0; p < 64; p++) raw[p] += Math.abs(epsQ.data[c * 64 + p] - epsR.data[c * 64 + p]) / 4;
    const scale = (raw.reduce((a, b) => a + b, 0) / 64) * 1e9;
    for (let p = 0; p < 64; p++)
      expect(Math.abs(single.data[p] - raw[p] / scale)).toBeLessThan(1e-5 * (raw[p] / scale) + 1e-15);
  });

  it('is empty when the query equals the reference', async () => {
    const x0 = await (await bundle.vaeEncoder()).encode(image);
    const map = await inferMask(bundle, x0, {
      query: 'a cat',
      reference: 'a cat',
      maskStrength: 0.5,
      maskDraws: 2,
      clampRatio: 3,
      numInferenceSteps: 10,
      generator: new Generator(1),
    });
    expect(Math.max(...map.data)).toBe(0);
  });
});

describe('DiffEdit decoding', () => {
  it('keeps the input exactly where the mask is empty: the last step blends with x_0 itself', async () => {
    const keepAll = NDArray.zeros([1, 1, 32, 32]);
    const result = await diffEdit(bundle, { ...base, image, mask: keepAll, maskBlend: 'replace' });
    const x0 = await (await bundle.vaeEncoder()).encode(image);
    // An off-by-one alignment (blending with the latent one step noisier) would end at x_{t1}, not x_0.
    expect(result.latents.maxAbsDiff(x0)).toBe(0);
    expect(Math.max(...result.mask.data)).toBe(0);
  });

  it('changes only the masked region, and the background follows the encoded trajectory step by step', async () => {
    const userMask = NDArray.zeros([1, 1, 32, 32]);
    for (let y = 8; y < 24; y++) for (let x = 8; x < 24; x++) userMask.data[y * 32 + x] = 1;
    const result = await diffEdit(bundle, { ...base, image, mask: userMask });
    const x0 = result.encodedLatents[0];
    // Latent cells 2..5 are inside; everything else must be x_0 exactly.
    let insideChanged = 0;
    for (let c = 0; c < 4; c++) {
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) {
          const i = c * 64 + y * 8 + x;
          const inside = y >= 2 && y < 6 && x >= 2 && x < 6;
          if (inside) insideChanged = Math.max(insideChanged, Math.abs(result.latents.data[i] - x0.data[i]));
          else expect(result.latents.data[i]).toBe(x0.data[i]);
        }
      }
    }
    expect(insideChanged).toBeGreaterThan(1e-3);
  });

  it('encodes with the same latents as DDIM inversion to ratio r', async () => {
    const result = await diffEdit(bundle, { ...base, image, strength: 0.6, useMask: false });
    const inversion = await ddimInversion(bundle, { image, numInferenceSteps: 10, inversionStrength: 0.6 });
    expect(result.encodedLatents).toHaveLength(7);
    expect(result.encodedLatents[6].maxAbsDiff(inversion.latents)).toBe(0);
  });

  it('supports the "without encoding" ablation and reports masks at both resolutions', async () => {
    const result = await diffEdit(bundle, { ...base, image, encoding: 'noise', maskDraws: 2 });
    expect(result.mask.shape).toEqual([1, 1, 32, 32]);
    expect(result.latentMask.shape).toEqual([1, 1, 8, 8]);
    expect(result.maskMap.shape).toEqual([1, 1, 32, 32]);
    expect(result.image.shape).toEqual([1, 3, 32, 32]);
    expect(result.encodedLatents).toHaveLength(9); // x_0 plus the 8 timesteps of r = 0.8 of 10
  });

  it('rejects bad arguments with clear messages', async () => {
    await expect(diffEdit(bundle, { ...base, image, strength: 0 })).rejects.toThrow(/strength must be in/);
    await expect(diffEdit(bundle, { ...base, image, threshold: 2 })).rejects.toThrow(/threshold/);
    await expect(diffEdit(bundle, { ...base, image, mask: NDArray.zeros([1, 1, 8, 8]) })).rejects.toThrow(
      /mask must be/,
    );
  });
});

describe('DiffEdit end to end on the bundled EmojiWorld model', () => {
  it('infers the ground-truth region and preserves the background on held-out replacement edits', async () => {
    const { editVocabulary, renderScene, sampleEdit, sampleScene, splitSeeds } =
      await import('../../src/world/index.js');
    const world = bundledWorldSubset().scene;
    const { rgb8ToTensor } = await import('../../src/image/io.js');
    const { maskIoU, psnr } = await import('../../src/metrics/image.js');
    const emoji = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu' });
    try {
      const ious: number[] = [];
      const backgrounds: number[] = [];
      for (const seed of splitSeeds('heldout', 8)) {
        const edit = await sampleEdit(sampleScene(seed, world), 'replace', seed, editVocabulary(world));
        const source = await renderScene(edit.source);
        const size = { width: edit.width, height: edit.height };
        const result = await diffEdit(emoji, {
          image: rgb8ToTensor({ data: source.image, ...size }, '[-1,1]'),
          prompt: edit.targetCaption,
          sourcePrompt: edit.sourceCaption,
          numInferenceSteps: 25,
          strength: 0.5,
          seed,
        });
        const truth = new NDArray(
          Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
          [1, 1, edit.height, edit.width],
        );
        ious.push(maskIoU(result.mask, truth));
        backgrounds.push(
          psnr(
            result.image,
            rgb8ToTensor({ data: source.image, ...size }, '[0,1]'),
            truth.map((v) => 1 - v),
          ),
        );
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      console.info(
        `[diffedit, emoji-ldm] mask IoU ${mean(ious).toFixed(3)}, background PSNR ${mean(backgrounds).toFixed(2)} dB`,
      );
      // Issue 9's bars for the bundled model (bench diffedit: 50 cases, 50 steps): mask IoU ≥ 0.5, background
      // ≥ 28 dB. Here 8 cases at 25 steps, r = 0.5 (the bench's setting that meets all its bars).
      expect(mean(ious)).toBeGreaterThanOrEqual(0.5);
      expect(mean(backgrounds)).toBeGreaterThanOrEqual(28);
    } finally {
      await emoji.release();
    }
  }, 600_000);
});
