/**
 * DiffusionCLIP on the bundled models (UNet → VAE decoder → CLIP image tower, all opset 17):
 *  - the step-loss graph's value equals the same loss computed piece by piece with the runtime models;
 *  - its gradients (x_t and LoRA factors) match central finite differences of that graph;
 *  - fine-tuning lowers the loss; the full chain runs and gives one update per image;
 *  - deltas (LoRA and full) save, load and mix; bad input gets clear errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addLora,
  foldInitializerCasts,
  graphOf,
  loadModel,
  setTensorValues,
  tensorToFloat32,
  type ModelProto,
} from '../../src/autodiff/index.js';
import { rgb8ToTensor } from '../../src/image/io.js';
import { resizeBilinearChannels } from '../../src/image/resample.js';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { ClipModel } from '../../src/models/clip.js';
import { UNet } from '../../src/models/unet.js';
import { mergeLora } from '../../src/pipelines/drag/lora.js';
import { sessionFromModel } from '../../src/pipelines/drag/unet_models.js';
import { applyDelta, readDeltaInfo } from '../../src/pipelines/diffusion_clip/delta.js';
import { diffusionClipEdit, loadDeltas, mixingWeights } from '../../src/pipelines/diffusion_clip/edit.js';
import { diffusionClipFinetune } from '../../src/pipelines/diffusion_clip/finetune.js';
import {
  buildClipLossModel,
  type ClipLossSpec,
  CLIP_LOSS_INPUTS,
  CLIP_VIEWS,
} from '../../src/pipelines/diffusion_clip/models.js';
import { ddimCoefficients, diffusionClipTimesteps } from '../../src/pipelines/diffusion_clip/schedule.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import type { ModelSession } from '../../src/runtime/session.js';
import { createScheduler } from '../../src/schedulers/index.js';
import { UserError } from '../../src/util/errors.js';
import { renderScene } from '../../src/world/render.js';
import { sampleScene } from '../../src/world/scene.js';
import { splitSeeds } from '../../src/world/splits.js';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';

const CLIP_DIR = join(EMOJI_LDM, '..', 'emoji-clip');
const scratch = mkdtempSync(join(tmpdir(), 'editkit-dclip-'));
let bundle: StableDiffusionBundle;
let clip: ClipModel;
let images: NDArray[];

beforeAll(async () => {
  bundle = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu', intraOpNumThreads: 2 });
  clip = await ClipModel.load(CLIP_DIR);
  const scene = { ...bundledWorldSubset().scene, width: 64, height: 64, backgrounds: ['grass'] };
  images = [];
  for (const seed of splitSeeds('train', 3, 40)) {
    const r = await renderScene(sampleScene(seed, scene));
    images.push(rgb8ToTensor({ data: r.image, width: 64, height: 64 }, '[-1,1]'));
  }
});
afterAll(async () => {
  await bundle.release();
  await clip.release();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the step-loss graph', () => {
  let base: ModelProto;
  let lora: ReturnType<typeof addLora>;
  let session: ModelSession;
  let model: ReturnType<typeof buildClipLossModel>;
  const params = () => lora.parameters.slice(0, 4);
  const feeds: Record<string, NDArray> = {};
  /** The step-loss model of the LoRA UNet on the bundled model, with the test's loss weights. */
  const lossModel = async (spec: Partial<ClipLossSpec>) =>
    buildClipLossModel(
      lora.model,
      await loadModel(join(EMOJI_LDM, 'vae_decoder', 'model.onnx')),
      await loadModel(clip.imageModelPath),
      {
        output: bundle.unet.outputName,
        sampleShape: [1, 8, 16, 16],
        contextShape: [1, 24, 128],
        timestepShape: [1],
        scalingFactor: bundle.vaeDecoder.scalingFactor,
        clipProcessing: clip.processing,
        imageSize: [64, 64],
        lambdaClip: 1,
        lambdaL1: 0.3,
        parameters: params(),
        sampleGradient: true,
        ...spec,
      },
    );

  beforeAll(async () => {
    base = await loadModel(join(EMOJI_LDM, 'unet', 'model.onnx'));
    foldInitializerCasts(base);
    lora = addLora(base, { rank: 2, prefix: 'unet.', initB: 'normal', seed: 5 });
    // B large enough that the adapters change ε visibly.
    for (const t of graphOf(lora.model).initializer.filter((t) => t.name.endsWith('lora_B.weight')))
      setTensorValues(
        t,
        tensorToFloat32(t).map((v) => v * 20),
      );
    model = await lossModel({ sampleGradient: true });
    session = await sessionFromModel(model.model, { device: 'cpu', intraOpNumThreads: 2 }, 'dclip_test');
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    const a = scheduler.alphasCumprod[300];
    const x0 = await (await bundle.vaeEncoder()).encode(images[0]);
    const gen = new Generator(3);
    feeds.sample = x0.axpby(Math.sqrt(a), gen.randn(x0.shape), Math.sqrt(1 - a));
    feeds.timestep = NDArray.full([1], 300);
    feeds.encoder_hidden_states = (await bundle.textEncoder.encode(
      ...(() => {
        const e = bundle.tokenizer.batchEncode(['']);
        return [e.inputIds, e.shape] as const;
      })(),
    )) as NDArray;
    feeds[CLIP_LOSS_INPUTS.x0Coefficients] = new NDArray(Float32Array.from(ddimCoefficients(a, 1).x0), [2]);
    feeds[CLIP_LOSS_INPUTS.sourceImage] = images[1];
    // A different image, so that the test tells the directional term's reference from the identity term's source.
    feeds[CLIP_LOSS_INPUTS.referenceImage] = images[2];
    feeds[CLIP_LOSS_INPUTS.viewNoise] = NDArray.zeros([CLIP_VIEWS.length, 3, 64, 64]);
    const texts = await clip.embedTexts(['a photo on the grass', 'a photo on the snow']);
    feeds[CLIP_LOSS_INPUTS.textDirection] = new NDArray(
      Float32Array.from(
        { length: CLIP_VIEWS.length * 128 },
        (_, j) => texts.data[128 + (j % 128)] - texts.data[j % 128],
      ),
      [CLIP_VIEWS.length, 128],
    );
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    for (const p of params())
      feeds[p] = new NDArray(tensorToFloat32(inits.get(p)!), inits.get(p)!.dims.map(Number));
  });
  afterAll(async () => {
    await session.release();
  });

  it('computes the loss the pieces give: UNet+LoRA → x̂₀ → VAE → CLIP views → directional + L1', async () => {
    const out = await session.run(feeds, [model.loss, model.clipLoss, model.l1]);
    const unet = new UNet(await sessionFromModel(mergeLora(base, lora), { device: 'cpu' }, 'merged'));
    try {
      const eps = await unet.predict(feeds.sample, 300, feeds.encoder_hidden_states);
      const [cx, ce] = feeds[CLIP_LOSS_INPUTS.x0Coefficients].data;
      const image = await bundle.vaeDecoder.decodeRaw(feeds.sample.axpby(cx, eps, ce));
      const source = feeds[CLIP_LOSS_INPUTS.sourceImage];
      const reference = feeds[CLIP_LOSS_INPUTS.referenceImage];
      const l1 = image.data.reduce((s, v, i) => s + Math.abs(v - source.data[i]), 0) / image.size;
      const crop = (x: NDArray, [top, left, h, w]: readonly number[]) => {
        const y0 = Math.round(top * 64);
        const x0 = Math.round(left * 64);
        const hh = Math.round(h * 64);
        const ww = Math.round(w * 64);
        const out = new Float32Array(3 * hh * ww);
        for (let c = 0; c < 3; c++)
          for (let y = 0; y < hh; y++)
            for (let xx = 0; xx < ww; xx++)
              out[(c * hh + y) * ww + xx] = x.data[(c * 64 + y0 + y) * 64 + x0 + xx];
        return resizeBilinearChannels(new NDArray(out, [1, 3, hh, ww]), 64, 64);
      };
      const direction = feeds[CLIP_LOSS_INPUTS.textDirection];
      let clipLoss = 0;
      for (const view of CLIP_VIEWS) {
        const [e, s] = [
          await clip.embedImages(
            crop(
              image.map((v) => v / 2 + 0.5),
              view,
            ),
          ),
          await clip.embedImages(
            crop(
              reference.map((v) => v / 2 + 0.5),
              view,
            ),
          ),
        ];
        let dot = 0;
        let nd = 0;
        let nt = 0;
        for (let k = 0; k < 128; k++) {
          const d = e.data[k] - s.data[k];
          dot += d * direction.data[k];
          nd += d * d;
          nt += direction.data[k] ** 2;
        }
        clipLoss += (1 - dot / Math.sqrt(nd * nt)) / CLIP_VIEWS.length;
      }
      console.info(
        `[dclip] loss graph ${out[model.clipLoss].data[0].toFixed(5)} / ${out[model.l1].data[0].toFixed(5)}, host ${clipLoss.toFixed(5)} / ${l1.toFixed(5)}`,
      );
      expect(out[model.l1].data[0]).toBeCloseTo(l1, 4);
      expect(out[model.clipLoss].data[0]).toBeCloseTo(clipLoss, 3);
      expect(out[model.loss].data[0]).toBeCloseTo(clipLoss + 0.3 * l1, 3);
    } finally {
      await unet.session.release();
    }
  });

  it('gradients of x_t and of LoRA factors match central finite differences', async () => {
    const names = ['sample', params()[0], params()[1]];
    const out = await session.run(feeds, [model.loss, ...names.map((n) => model.gradients[n])]);
    const gen = new Generator(11);
    for (const name of names) {
      const g = out[model.gradients[name]];
      const v = gen.randn(g.shape);
      const analytic = g.data.reduce((s, x, i) => s + x * v.data[i], 0);
      const h = name === 'sample' ? 2e-3 : 1e-2;
      const at = async (sign: number) =>
        (await session.run({ ...feeds, [name]: feeds[name].axpby(1, v, sign * h) }, [model.loss]))[model.loss]
          .data[0];
      const numeric = ((await at(1)) - (await at(-1))) / (2 * h);
      console.info(
        `[dclip] d loss/d ${name} · v: analytic ${analytic.toExponential(4)}, numeric ${numeric.toExponential(4)}`,
      );
      expect(Math.abs(analytic - numeric)).toBeLessThan(0.05 * Math.abs(numeric) + 1e-4);
    }
  });
  it('a floor on the CLIP change: below it the directional term is a bounded projection, finite at zero change', async () => {
    const floor = 0.02;
    const floored = await lossModel({ changeFloor: floor, sampleGradient: false });
    const flooredSession = await sessionFromModel(
      floored.model,
      { device: 'cpu', intraOpNumThreads: 2 },
      'dclip_floor',
    );
    const unet = new UNet(await sessionFromModel(mergeLora(base, lora), { device: 'cpu' }, 'merged'));
    try {
      // Far from the reference the floor changes nothing: the same loss as the plain cosine.
      const plain = await session.run(feeds, [model.clipLoss]);
      const far = await flooredSession.run(feeds, [floored.clipLoss]);
      expect(far[floored.clipLoss].data[0]).toBeCloseTo(plain[model.clipLoss].data[0], 4);
      // The reference is the prediction itself (the 'original' reference at the first update): the change is zero.
      const eps = await unet.predict(feeds.sample, 300, feeds.encoder_hidden_states);
      const [cx, ce] = feeds[CLIP_LOSS_INPUTS.x0Coefficients].data;
      const own = await bundle.vaeDecoder.decodeRaw(feeds.sample.axpby(cx, eps, ce));
      const names = params().map((p) => floored.gradients[p]);
      const same = await flooredSession.run({ ...feeds, [CLIP_LOSS_INPUTS.referenceImage]: own }, [
        floored.clipLoss,
        ...names,
      ]);
      expect(same[floored.clipLoss].data[0]).toBeCloseTo(1, 3);
      const norms = names.map((n) => Math.hypot(...same[n].data));
      console.info(
        `[dclip] zero change: loss ${same[floored.clipLoss].data[0].toFixed(5)}, |grad| ${norms.map((v) => v.toExponential(2)).join(' ')}`,
      );
      for (const v of norms) {
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThan(0);
      }
      // Without the floor the same point is degenerate: the cosine's gradient grows as 1/|change|.
      const unfloored = await session.run({ ...feeds, [CLIP_LOSS_INPUTS.referenceImage]: own }, [
        model.gradients[params()[0]],
      ]);
      const raw = Math.hypot(...unfloored[model.gradients[params()[0]]].data);
      expect(!Number.isFinite(raw) || raw > 100 * norms[0]).toBe(true);
    } finally {
      await unet.session.release();
      await flooredSession.release();
    }
  });
});

describe('fine-tuning', () => {
  it('per-step: the loss falls over two epochs; the LoRA delta saves, loads and edits', async () => {
    const result = await diffusionClipFinetune(bundle, clip, {
      images: images.slice(0, 2),
      sourceText: 'a photo on the grass',
      targetText: 'a photo on the snow',
      epochs: 2,
      generationSteps: 4,
      inversionSteps: 10,
      learningRate: 5e-4,
      intraOpNumThreads: 2,
    });
    expect(result.updates).toHaveLength(2 * 2 * 4);
    const epochMean = (e: number) =>
      result.updates.filter((u) => u.epoch === e).reduce((s, u) => s + u.clipLoss, 0) / 8;
    console.info(`[dclip] mean CLIP loss per epoch: ${epochMean(0).toFixed(4)} → ${epochMean(1).toFixed(4)}`);
    expect(epochMean(1)).toBeLessThan(epochMean(0));
    const path = join(scratch, 'lora.safetensors');
    await result.save(path);
    const info = await readDeltaInfo(path);
    expect(info.kind).toBe('lora');
    expect(info.metadata).toMatchObject({
      from: 'a photo on the grass',
      to: 'a photo on the snow',
      gradient: 'per-step',
    });
    const [loaded] = await loadDeltas(bundle, [{ path, weight: 1 }]);
    // The loaded delta gives the same edit as the model in memory.
    const a = await diffusionClipEdit(bundle, {
      image: images[2],
      models: [{ unet: result.tunedUnet(), weight: 1 }],
      generationSteps: 6,
    });
    const b = await diffusionClipEdit(bundle, { image: images[2], models: [loaded], generationSteps: 6 });
    expect(Math.max(...a.data.map((v, i) => Math.abs(v - b.data[i])))).toBeLessThan(1e-4);
    // Half the delta mixed with the original model lies between the original edit and the full one.
    const base = await loadModel(join(EMOJI_LDM, 'unet', 'model.onnx'));
    foldInitializerCasts(base);
    const none = await diffusionClipEdit(bundle, {
      image: images[2],
      models: [{ unet: base, weight: 1 }],
      generationSteps: 6,
    });
    const half = await diffusionClipEdit(bundle, {
      image: images[2],
      models: [{ unet: loaded.unet, weight: 0.5 }],
      generationSteps: 6,
    });
    const dist = (x: NDArray, y: NDArray) =>
      x.data.reduce((s, v, i) => s + Math.abs(v - y.data[i]), 0) / x.size;
    expect(dist(a, none)).toBeGreaterThan(1e-3);
    expect(dist(half, none)).toBeLessThan(dist(a, none));
    expect(dist(half, a)).toBeLessThan(dist(a, none));
  });

  it("'original' reference: the change starts at zero (loss 1), then follows the text; per-step and chain", async () => {
    for (const gradient of ['per-step', 'chain'] as const) {
      const result = await diffusionClipFinetune(bundle, clip, {
        images: images.slice(0, 1),
        sourceText: 'a photo on the grass',
        targetText: 'a photo on the snow',
        directionReference: 'original',
        gradient,
        epochs: gradient === 'chain' ? 4 : 2,
        generationSteps: 3,
        inversionSteps: 6,
        learningRate: 5e-4,
        intraOpNumThreads: 2,
      });
      const losses = result.updates.map((u) => u.clipLoss);
      console.info(
        `[dclip] 'original' reference, ${gradient}: CLIP loss ${losses.map((v) => v.toFixed(4)).join(' ')}`,
      );
      // LoRA's B starts at zero: the tuned model is the original, so the first change is nil.
      expect(losses[0]).toBeCloseTo(1, 3);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(Math.min(...losses.slice(1))).toBeLessThan(0.99);
      expect(result.settings).toMatchObject({ directionReference: 'original', changeFloor: 0.02 });
    }
  });

  it('identity targets: with the CLIP terms off, the L1 pulls the generation toward another image', async () => {
    const target = images[2];
    const result = await diffusionClipFinetune(bundle, clip, {
      images: images.slice(0, 1),
      identityTargets: [target],
      sourceText: 'a photo on the grass',
      targetText: 'a photo on the snow',
      lambdaClip: 0,
      lambdaL1: 1,
      epochs: 3,
      generationSteps: 3,
      inversionSteps: 6,
      learningRate: 1e-3,
      intraOpNumThreads: 2,
    });
    const l1 = result.updates.map((u) => u.l1);
    console.info(`[dclip] identity-target L1 per update: ${l1.map((v) => v.toFixed(4)).join(' ')}`);
    // The loss is the L1 alone, to the target (not to the input).
    for (const u of result.updates) expect(u.loss).toBeCloseTo(u.l1, 5);
    const lastStep = (e: number) => result.updates.find((u) => u.epoch === e && u.step === 2)!.l1;
    expect(lastStep(2)).toBeLessThan(lastStep(0));
  });

  it("per-image directions: from each image's own texts, or given in CLIP space; the loss follows them", async () => {
    const common = {
      images: images.slice(0, 1),
      sourceText: 'a photo on the grass',
      targetText: 'a photo on the snow',
      epochs: 1,
      generationSteps: 2,
      inversionSteps: 4,
      intraOpNumThreads: 2,
    };
    const texts = await clip.embedTexts(['a photo of a cat on the grass', 'a photo of a cat on the snow']);
    const dim = texts.shape[1];
    const own = Float32Array.from({ length: dim }, (_, j) => texts.data[dim + j] - texts.data[j]);
    const fromTexts = await diffusionClipFinetune(bundle, clip, {
      ...common,
      imageTexts: [{ source: 'a photo of a cat on the grass', target: 'a photo of a cat on the snow' }],
    });
    const given = await diffusionClipFinetune(bundle, clip, { ...common, imageDirections: [own] });
    const opposite = await diffusionClipFinetune(bundle, clip, {
      ...common,
      imageDirections: [own.map((v) => -v)],
    });
    const mean = await diffusionClipFinetune(bundle, clip, common);
    // The first update sees the same weights in every run: only the direction differs.
    const first = (r: typeof mean) => r.updates[0].clipLoss;
    console.info(
      `[dclip] first CLIP loss: mean ${first(mean).toFixed(5)}, own texts ${first(fromTexts).toFixed(5)}, given ${first(given).toFixed(5)}, opposite ${first(opposite).toFixed(5)}`,
    );
    expect(first(fromTexts)).toBeCloseTo(first(given), 5);
    expect(first(given) + first(opposite)).toBeCloseTo(2, 4);
    expect(Math.abs(first(given) - first(mean))).toBeGreaterThan(1e-4);
    expect(fromTexts.settings.directions).toBe('per-image');
    expect(given.settings.directions).toBe('given');
  });

  it('the full chain: one update per image, and a full-weight delta that applies', async () => {
    const result = await diffusionClipFinetune(bundle, clip, {
      images: images.slice(0, 2),
      sourceText: 'a photo on the grass',
      targetText: 'a photo on the sand',
      gradient: 'chain',
      adapter: 'full',
      generationSteps: 3,
      inversionSteps: 6,
      intraOpNumThreads: 2,
    });
    expect(result.updates).toHaveLength(2);
    const path = join(scratch, 'full.safetensors');
    await result.save(path);
    expect((await readDeltaInfo(path)).kind).toBe('full');
    const base = await loadModel(join(EMOJI_LDM, 'unet', 'model.onnx'));
    foldInitializerCasts(base);
    const merged = await applyDelta(base, path);
    const tuned = result.tunedUnet();
    // The delta holds W_ft − W: applying it to the base gives the fine-tuned weights back.
    const want = new Map(graphOf(tuned).initializer.map((t) => [t.name, t]));
    let checked = 0;
    let changed = 0;
    for (const t of graphOf(merged).initializer) {
      const w = want.get(t.name);
      if (!w || t.dataType !== 1) continue;
      const x = tensorToFloat32(t);
      const y = tensorToFloat32(w);
      expect(Math.max(...x.map((v, i) => Math.abs(v - y[i])))).toBeLessThan(1e-5);
      if (
        x.some((v, i) => v !== tensorToFloat32(graphOf(base).initializer.find((b) => b.name === t.name)!)[i])
      )
        changed++;
      if (++checked > 40) break;
    }
    expect(changed).toBeGreaterThan(0);
  });
});

describe('schedules, mixing and bad input', () => {
  it("builds the reference's timestep sequences and mixing weights", () => {
    expect(diffusionClipTimesteps(400, 6)).toEqual([0, 80, 160, 240, 320, 400]);
    expect(diffusionClipTimesteps(500, 40)[39]).toBe(500);
    expect(diffusionClipTimesteps(500, 40)[1]).toBe(12); // int(500/39)
    expect(mixingWeights([0.6, 0.4])).toEqual({ tuned: [0.6, 0.4], original: 0 });
    expect(mixingWeights([1, 1])).toEqual({ tuned: [0.5, 0.5], original: 0 });
    const weak = mixingWeights([0.25]);
    expect(weak.tuned).toEqual([0.25]);
    expect(weak.original).toBeCloseTo(0.75, 10);
    expect(() => mixingWeights([])).toThrow(UserError);
    expect(() => mixingWeights([0.5, -1])).toThrow(/must be positive/);
  });

  it('refuses bad input before any training', async () => {
    const run = (o: Partial<Parameters<typeof diffusionClipFinetune>[2]>) =>
      diffusionClipFinetune(bundle, clip, {
        images: images.slice(0, 1),
        sourceText: 'a photo on the grass',
        targetText: 'a photo on the snow',
        ...o,
      });
    await expect(run({ images: [] })).rejects.toThrow(/at least one training image/);
    await expect(run({ targetText: 'a photo on the grass' })).rejects.toThrow(/same text/);
    await expect(run({ t0: 5000 })).rejects.toThrow(/t₀ must be an integer timestep from 1 to 999/);
    await expect(run({ generationSteps: 1 })).rejects.toThrow(/at least 2 steps/);
    await expect(run({ images: [images[0], NDArray.zeros([1, 3, 32, 32])] })).rejects.toThrow(
      /share one size/,
    );
    await expect(run({ identityTargets: images.slice(0, 2) })).rejects.toThrow(
      /one identity target per training image/,
    );
    await expect(run({ identityTargets: [NDArray.zeros([1, 3, 32, 32])] })).rejects.toThrow(
      /identity targets must be 64×64/,
    );
    await expect(run({ changeFloor: -1 })).rejects.toThrow(/change floor must be ≥ 0/);
    await expect(run({ imageTexts: [] })).rejects.toThrow(/one set of direction texts per training image/);
    await expect(run({ imageDirections: [new Float32Array(3)] })).rejects.toThrow(/CLIP's 128 dimensions/);
    await expect(
      run({ imageTexts: [{ source: 'a', target: 'b' }], imageDirections: [new Float32Array(128)] }),
    ).rejects.toThrow(/not both/);
    await expect(
      applyDelta(
        await loadModel(join(EMOJI_LDM, 'unet', 'model.onnx')),
        join(scratch, 'missing.safetensors'),
      ),
    ).rejects.toThrow(/cannot read the delta/);
  });
});
