/**
 * DragDiffusion (issue 6): point parsing and validation, motion supervision and point tracking against a PyTorch
 * reference (training/reference/drag_motion_reference.py), the latent-optimisation gradient against central
 * finite differences on the tiny UNet, LoRA training, the UNet graph variants, and end-to-end runs on the tiny
 * random-weight bundle (32×32 images: 8×8 latents, an 8×8 decoder feature map, a 16×16 supervision grid).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataType,
  graphOf,
  loadModel,
  makeTensor,
  saveModel,
  type ModelProto,
} from '../../src/autodiff/index.js';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { UNet } from '../../src/models/unet.js';
import {
  affineStep,
  buildDragGradientModel,
  chooseFeatureTensor,
  DRAG_INPUTS,
  dragDiffusion,
  FeatureGrid,
  findUpBlockOutputs,
  foldInitializerCasts,
  formatDragPoints,
  handlesReached,
  inversionStepCount,
  loadDragLora,
  loadUnetGraph,
  mergeLora,
  motionLoss,
  motionSampling,
  mutualSelfAttentionModel,
  parseDragPoints,
  saveDragLora,
  sessionFromModel,
  toGrid,
  trackPoints,
  trainDragLora,
  validateDragInputs,
  type GridPoint,
} from '../../src/pipelines/drag/index.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { createScheduler } from '../../src/schedulers/index.js';
import { UserError } from '../../src/util/errors.js';
import { readNpy } from '../../src/util/npy.js';
import { readSafetensors } from '../../src/autodiff/safetensors.js';
import { TinyModel } from '../autodiff/harness.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const TINY = join(FIXTURES, 'bundles', 'tiny-sd');
const settings = { device: 'cpu' as const, intraOpNumThreads: 1 };
const scratch = mkdtempSync(join(tmpdir(), 'editkit-drag-test-'));
let bundle: StableDiffusionBundle;
let image: NDArray;
let unetModel: ModelProto;
beforeAll(async () => {
  bundle = await StableDiffusionBundle.load(TINY, { device: 'cpu', intraOpNumThreads: 1 });
  image = await readNpy(join(FIXTURES, 'parity', 'img2img_ddim', 'image.npy'));
  unetModel = await loadModel(join(TINY, 'unet', 'model.onnx'));
});
afterAll(async () => {
  await bundle.release();
  rmSync(scratch, { recursive: true, force: true });
});

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('drag points', () => {
  it('parses handle:target pairs and round-trips them', () => {
    const p = parseDragPoints(' 10,20:30,20 ; 1.5,2:3,4; ');
    expect(p).toEqual({
      handles: [
        [10, 20],
        [1.5, 2],
      ],
      targets: [
        [30, 20],
        [3, 4],
      ],
    });
    expect(parseDragPoints(formatDragPoints(p))).toEqual(p);
  });

  it.each([
    ['', /--points is empty/],
    ['10,20', /pair 1 \('10,20'\) is incomplete/],
    ['10,20:30,20;5,5:', /pair 2 .* is incomplete/],
    ['10,20:30', /target of pair 1 \('30'\) must be two numbers/],
    ['a,1:2,3', /handle of pair 1/],
    ['1,2:3,4:5,6', /incomplete/],
  ])('rejects %j with a clear UserError', (text, message) => {
    expect(() => parseDragPoints(text)).toThrow(UserError);
    expect(() => parseDragPoints(text)).toThrow(message);
  });

  it('checks pairs, image bounds and the mask', () => {
    const ok = { handles: [[3, 4]] as [number, number][], targets: [[31, 0]] as [number, number][] };
    expect(() => validateDragInputs(ok, 32, 32)).not.toThrow();
    expect(() => validateDragInputs({ handles: [[1, 1]], targets: [] }, 32, 32)).toThrow(
      /1 handles and 0 targets/,
    );
    expect(() => validateDragInputs({ handles: [], targets: [] }, 32, 32)).toThrow(/at least one/);
    expect(() => validateDragInputs({ handles: [[32, 1]], targets: [[1, 1]] }, 32, 32)).toThrow(
      /handle of pair 1 \(32, 1\) is outside the 32×32 image/,
    );
    expect(() => validateDragInputs({ handles: [[1, 1]], targets: [[1, -1]] }, 32, 32)).toThrow(
      /target of pair 1/,
    );
    expect(() => validateDragInputs(ok, 32, 32, NDArray.full([1, 1, 16, 32], 1))).toThrow(
      /mask must be \[1, 1, 32, 32\]/,
    );
    expect(() => validateDragInputs(ok, 32, 32, NDArray.zeros([1, 1, 32, 32]))).toThrow(/all black/);
  });

  it('maps pixels to the supervision grid like the official code (round half to even), clamped to the grid', () => {
    expect(toGrid([3, 5], 32, 32, 16, 16)).toEqual([2, 2]); // 2.5 → 2, 1.5 → 2
    expect(toGrid([31, 31], 32, 32, 16, 16)).toEqual([15, 15]); // 15.5 → 16, one past the grid
  });

  it("counts inverted steps with Python's round (halves to even), as the official code", () => {
    // Python: round(50 * 0.45) = 22, round(50 * 0.65) = 32, round(50 * 0.85) = 42; Math.round gives one more.
    expect(inversionStepCount(50, 0.45)).toBe(22);
    expect(inversionStepCount(50, 0.65)).toBe(32);
    expect(inversionStepCount(50, 0.85)).toBe(42);
    expect(inversionStepCount(50, 0.7)).toBe(35);
    expect(inversionStepCount(50, 0.75)).toBe(38); // 37.5 → 38 (even)
    expect(inversionStepCount(10, 0.05)).toBe(0); // 0.5 → 0, which the pipeline refuses
  });

  it('the pipeline rejects bad inputs before any model runs', async () => {
    await expect(dragDiffusion(bundle, { image, handles: [[40, 1]], targets: [[1, 1]] })).rejects.toThrow(
      /outside the 32×32 image/,
    );
    await expect(
      dragDiffusion(bundle, {
        image,
        handles: [[4, 1]],
        targets: [[1, 1]],
        mask: NDArray.zeros([1, 1, 32, 32]),
      }),
    ).rejects.toThrow(/all black/);
    await expect(
      dragDiffusion(bundle, { image, handles: [[4, 1]], targets: [[1, 1]], dragSteps: -1 }),
    ).rejects.toThrow(UserError);
  });
});

// ---------------------------------------------------------------------------------------------------------------

interface Reference {
  features_shape: number[];
  grid: [number, number];
  radius: number;
  tracking_radius: number;
  features: number[];
  handles: GridPoint[];
  targets: GridPoint[];
  loss: number;
  grad: number[];
  resized: number[];
  tracking: {
    current_features: number[];
    initial_handles: GridPoint[];
    handles: GridPoint[];
    tracked: GridPoint[];
  };
}

describe('motion supervision and point tracking vs PyTorch', () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'drag', 'motion_reference.json'), 'utf8')) as Reference;
  const [, C, h, w] = ref.features_shape;
  const [H, W] = ref.grid;
  const grid = new FeatureGrid(C, h, w, H, W);
  const features = new NDArray(Float32Array.from(ref.features), ref.features_shape);

  it('resizes like F.interpolate(bilinear, align_corners=False)', () => {
    expect(maxDiff(grid.resize(features).data, ref.resized)).toBeLessThan(1e-5);
  });

  it('computes the official loss (boundary-clipped patches, skipped near-target handles)', () => {
    const sampling = motionSampling(grid, ref.handles, ref.targets, { radius: ref.radius });
    expect(sampling.active).toEqual([true, true, true, false]);
    expect(motionLoss(features, sampling)).toBeCloseTo(ref.loss, 4);
  });

  it('the gradient model gives the loss value and autograd’s dL/dF (feature = sample in a synthetic UNet)', async () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    const sample = m.input('sample', [1, C, h, w]);
    const timestep = m.input('timestep', [1], DataType.INT64);
    const context = m.input('encoder_hidden_states', [1, 2, 3]);
    const feat = m.node('Identity', [sample], undefined, ['feat']);
    const scale = m.node('Cast', [timestep], { to: DataType.FLOAT });
    m.node(
      'Add',
      [m.node('Mul', [sample, scale]), m.node('ReduceSum', [context], { keepdims: 0 })],
      undefined,
      ['out_sample'],
    );
    m.output('out_sample');
    void feat;
    const points = ref.handles.length * 9;
    const drag = buildDragGradientModel(m.model(), {
      feature: 'feat',
      output: 'out_sample',
      sampleShape: [1, C, h, w],
      contextShape: [1, 2, 3],
      timestepShape: [1],
      cells: h * w,
      points,
    });
    const session = await sessionFromModel(drag.model, settings);
    try {
      const sampling = motionSampling(grid, ref.handles, ref.targets, { radius: ref.radius });
      const out = await session.run({
        sample: features,
        timestep: NDArray.full([1], 3),
        encoder_hidden_states: NDArray.full([1, 2, 3], 0.5),
        [DRAG_INPUTS.shifted]: sampling.shifted,
        [DRAG_INPUTS.source]: sampling.source,
        [DRAG_INPUTS.pointWeights]: sampling.weights,
        [DRAG_INPUTS.keep]: NDArray.zeros([1, 1, h, w]),
        [DRAG_INPUTS.previous]: NDArray.zeros([1, C, h, w]),
        [DRAG_INPUTS.coefficients]: new NDArray(Float32Array.from([0.9, -0.2]), [2]),
      });
      expect(out[drag.value].data[0]).toBeCloseTo(ref.loss, 4);
      const grad = out[drag.gradient].data;
      const err = maxDiff(grad, ref.grad) / maxAbs(ref.grad);
      console.info(`[torch parity] dL/dF: max error / max |value| = ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
    } finally {
      await session.release();
    }
  });

  it('tracks points like the official nearest-neighbour search', () => {
    const t = ref.tracking;
    const initial = t.initial_handles.map(([r, c]) => grid.vectorAt(features, r, c));
    const current = new NDArray(Float32Array.from(t.current_features), ref.features_shape);
    expect(trackPoints(grid, initial, current, t.handles, ref.tracking_radius)).toEqual(t.tracked);
  });
});

describe('point tracking on a synthetic map', () => {
  it('finds the original feature within r_p, ignores a better match outside it, clips at the border', () => {
    // Identity resize (grid = map) so the answer is known exactly.
    const C = 3;
    const size = 12;
    const grid = new FeatureGrid(C, size, size, size, size);
    const map = (marks: [number, number, number][]) => {
      const data = new Float32Array(C * size * size).fill(0);
      for (const [r, c, v] of marks)
        for (let k = 0; k < C; k++) data[k * size * size + r * size + c] = v * (k + 1);
      return new NDArray(data, [1, C, size, size]);
    };
    const initial = [grid.vectorAt(map([[5, 5, 1]]), 5, 5), grid.vectorAt(map([[0, 0, 2]]), 0, 0)];
    // Handle 0 is now at (7, 3) (2 down, 2 left); an exact copy at (5, 10) is 5 columns away, outside r_p = 3.
    // Handle 1's feature is at (1, 2); its window is clipped at the top-left corner.
    const current = map([
      [7, 3, 1],
      [5, 10, 1],
      [1, 2, 2],
    ]);
    expect(
      trackPoints(
        grid,
        initial,
        current,
        [
          [5, 6],
          [0, 0],
        ],
        3,
      ),
    ).toEqual([
      [7, 3],
      [1, 2],
    ]);
    expect(
      handlesReached(
        [
          [7, 3],
          [1, 2],
        ],
        [
          [8, 4],
          [1, 4],
        ],
      ),
    ).toBe(false);
    expect(
      handlesReached(
        [
          [7, 3],
          [1, 2],
        ],
        [
          [8, 4],
          [2, 3],
        ],
      ),
    ).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('latent optimisation gradient on the tiny UNet', () => {
  it('d loss / d z_t matches central finite differences of the loss (stop-gradient made explicit) from the same model', async () => {
    const feature = chooseFeatureTensor(unetModel, TINY);
    expect(feature).toMatchObject({
      tensor: '/up_blocks.0/upsampler/conv/Conv_output_0',
      block: 0,
      source: 'node names',
    });
    const grid = new FeatureGrid(32, 8, 8, 16, 16);
    const handles: GridPoint[] = [
      [6, 5],
      [10, 10],
    ];
    const targets: GridPoint[] = [
      [9, 11],
      [4, 12],
    ];
    const drag = buildDragGradientModel(unetModel, {
      feature: feature.tensor,
      output: 'out_sample',
      sampleShape: [1, 4, 8, 8],
      contextShape: [1, 77, 32],
      timestepShape: [1],
      cells: 64,
      points: 18,
    });
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    scheduler.setTimesteps(50);
    const t = 681;
    const { a, b } = affineStep(scheduler, t);
    const gen = new Generator(3);
    const sampling = motionSampling(grid, handles, targets, { radius: 1 });
    const keep = gen.randn([1, 1, 8, 8]).map((v) => 0.1 * (v > 0 ? 1 : 0));
    const fixed = {
      timestep: NDArray.full([1], t),
      encoder_hidden_states: gen.randn([1, 77, 32]),
      [DRAG_INPUTS.shifted]: sampling.shifted,
      [DRAG_INPUTS.source]: sampling.source,
      [DRAG_INPUTS.pointWeights]: sampling.weights,
      [DRAG_INPUTS.keep]: keep,
      [DRAG_INPUTS.previous]: gen.randn([1, 4, 8, 8]),
      [DRAG_INPUTS.coefficients]: new NDArray(Float32Array.from([a, b]), [2]),
    };
    const session = await sessionFromModel(drag.model, settings);
    try {
      const z = gen.randn([1, 4, 8, 8]);
      const at = async (x: NDArray) =>
        session.run({ ...fixed, sample: x }, [drag.value, drag.motion, drag.gradient, drag.feature]);
      const out = await at(z);
      // The graph's motion term equals the host's formula on the graph's own feature map.
      expect(out[drag.motion].data[0]).toBeCloseTo(motionLoss(out[drag.feature], sampling), 4);
      expect(out[drag.value].data[0]).toBeGreaterThan(out[drag.motion].data[0]);
      const grad = out[drag.gradient].data;
      // The loss with the stop-gradient made explicit: the reference patches F(q) stay those of z, only the shifted
      // samples and the mask term (value − motion) follow the perturbed z'.
      const frozen = async (x: NDArray) => {
        const o = await at(x);
        return (
          motionLoss(o[drag.feature], sampling, out[drag.feature]) +
          o[drag.value].data[0] -
          o[drag.motion].data[0]
        );
      };
      expect(await frozen(z)).toBeCloseTo(out[drag.value].data[0], 4);
      const step = 1e-3;
      for (let k = 0; k < 4; k++) {
        const v = gen.randn(z.shape);
        const norm = Math.hypot(...v.data);
        const dir = v.scale(1 / norm);
        const numeric =
          ((await frozen(z.axpby(1, dir, step))) - (await frozen(z.axpby(1, dir, -step)))) / (2 * step);
        const analytic = dir.data.reduce((s, d, i) => s + d * grad[i], 0);
        console.info(
          `[finite differences] direction ${k}: analytic ${analytic.toFixed(5)}, numeric ${numeric.toFixed(5)}`,
        );
        expect(Math.abs(numeric - analytic)).toBeLessThan(0.02 * Math.max(1, Math.abs(analytic)));
      }
    } finally {
      await session.release();
    }
  });

  it('the DDIM step is affine: a · z + b · ε equals the scheduler’s step', () => {
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    scheduler.setTimesteps(50);
    const gen = new Generator(9);
    const z = gen.randn([1, 4, 8, 8]);
    const eps = gen.randn([1, 4, 8, 8]);
    const { a, b } = affineStep(scheduler, 681);
    expect(
      maxDiff(z.axpby(a, eps, b).data, scheduler.step(eps, 681, z, { eta: 0 }).prevSample.data),
    ).toBeLessThan(1e-5);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('UNet graph variants', () => {
  it('finds the up-block outputs by node name', () => {
    expect(findUpBlockOutputs(unetModel)).toEqual([
      '/up_blocks.0/upsampler/conv/Conv_output_0',
      '/up_blocks.1/attentions.1/Add_output_0',
    ]);
    expect(chooseFeatureTensor(unetModel, TINY, { block: 1 }).tensor).toBe(
      '/up_blocks.1/attentions.1/Add_output_0',
    );
    expect(() => chooseFeatureTensor(unetModel, TINY, { block: 2 })).toThrow(/2 up blocks/);
    expect(() => chooseFeatureTensor(unetModel, TINY, { tensor: 'nope' })).toThrow(/--feature-tensor 'nope'/);
  });

  it('folds float16-stored weights so LoRA can adapt them', () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    const x = m.input('x', [2, 4]);
    m.inits.push(
      makeTensor(
        'w16',
        DataType.FLOAT16,
        [4, 4],
        Array.from({ length: 16 }, (_, i) => i / 16),
      ),
    );
    const w = m.node('Cast', ['w16'], { to: DataType.FLOAT });
    m.output(m.node('MatMul', [x, w]));
    m.nodes[1].name = '/attn1/to_q/MatMul';
    const model = m.model();
    expect(foldInitializerCasts(model)).toBe(1);
    const g = graphOf(model);
    expect(g.node.map((n) => n.opType)).toEqual(['MatMul']);
    expect(g.initializer.map((t) => [t.name, t.dataType])).toEqual([[w, DataType.FLOAT]]);
  });

  it('mutual self-attention: the reference branch is the plain UNet, and identical branches stay identical', async () => {
    const { model, layers, total } = mutualSelfAttentionModel(unetModel);
    expect(total).toBe(4);
    expect(layers).toEqual([
      '/up_blocks.1/attentions.0/transformer_blocks.0/attn1',
      '/up_blocks.1/attentions.1/transformer_blocks.0/attn1',
    ]);
    const mutual = new UNet(await sessionFromModel(model, settings));
    try {
      const gen = new Generator(4);
      const [x, y] = [gen.randn([1, 4, 8, 8]), gen.randn([1, 4, 8, 8])];
      const ctx = gen.randn([1, 77, 32]);
      const ctx2 = NDArray.concat([ctx, ctx]);
      const [ref, edited] = (await mutual.predict(NDArray.concat([x, y]), 500, ctx2)).chunk(2);
      const plainX = await bundle.unet.predict(x, 500, ctx);
      const plainY = await bundle.unet.predict(y, 500, ctx);
      expect(maxDiff(ref.data, plainX.data)).toBeLessThan(1e-5);
      expect(maxDiff(edited.data, plainY.data)).toBeGreaterThan(1e-3);
      const [same] = (await mutual.predict(NDArray.concat([x, x]), 500, ctx2)).chunk(2).slice(1);
      expect(maxDiff(same.data, plainX.data)).toBeLessThan(1e-5);
    } finally {
      await mutual.session.release();
    }
  });
});

describe('LoRA on the input image', () => {
  it('fine-tuning lowers the noise-prediction loss on the image; merged, saved and loaded adapters agree', async () => {
    const embedding = await bundle.textEncoder.encode(
      ...(() => {
        const { inputIds, shape } = bundle.tokenizer.batchEncode(['a cat']);
        return [inputIds, shape] as const;
      })(),
    );
    // A fixed evaluation set: the image's latent noised at 8 timesteps.
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    const x0 = await (await bundle.vaeEncoder()).encode(image);
    const evalGen = new Generator(77);
    const evalSet = [50, 150, 300, 450, 600, 750, 850, 950].map((t) => {
      const noise = evalGen.randn(x0.shape);
      return { t, noise, noisy: scheduler.addNoise(x0, noise, t) };
    });
    const evalLoss = async (unet: UNet) => {
      let total = 0;
      for (const { t, noise, noisy } of evalSet) {
        const eps = await unet.predict(noisy, t, embedding);
        total += eps.data.reduce((s, v, i) => s + (v - noise.data[i]) ** 2, 0) / eps.size;
      }
      return total / evalSet.length;
    };
    const before = await evalLoss(bundle.unet);
    const trained = await trainDragLora(
      bundle,
      unetModel,
      { image, embedding, generator: new Generator(1), seed: 0 },
      { rank: 4, steps: 40, learningRate: 1e-2, batchSize: 4 },
      settings,
    );
    expect(trained.losses).toHaveLength(40);
    expect(trained.lora.adapters).toHaveLength(32);
    const merged = new UNet(await sessionFromModel(mergeLora(unetModel, trained.lora), settings));
    const branch = new UNet(await sessionFromModel(trained.lora.model, settings));
    const path = join(scratch, 'lora.safetensors');
    await saveDragLora(path, trained.lora);
    const loaded = new UNet(
      await sessionFromModel(mergeLora(unetModel, await loadDragLora(path, unetModel)), settings),
    );
    // The official code's key names (AttnProcsLayers: `unet.….attn1.processor.to_q_lora.down.weight`).
    const referencePath = join(scratch, 'lora-reference-keys.safetensors');
    await saveDragLora(referencePath, trained.lora, {}, 'attn-procs');
    const referenceKeys = [...(await readSafetensors(referencePath)).tensors.keys()];
    expect(
      referenceKeys.every((k) => /^unet\..+\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$/.test(k)),
    ).toBe(true);
    const loadedReference = new UNet(
      await sessionFromModel(mergeLora(unetModel, await loadDragLora(referencePath, unetModel)), settings),
    );
    try {
      const after = await evalLoss(merged);
      console.info(
        `[LoRA] eval loss ${before.toFixed(4)} → ${after.toFixed(4)}; training loss ${trained.losses[0].toFixed(4)} → ${trained.losses.at(-1)!.toFixed(4)}`,
      );
      expect(after).toBeLessThan(0.8 * before);
      const firstTen = trained.losses.slice(0, 10).reduce((a, b) => a + b) / 10;
      const lastTen = trained.losses.slice(-10).reduce((a, b) => a + b) / 10;
      expect(lastTen).toBeLessThan(firstTen);
      const { t, noisy } = evalSet[3];
      const viaMerged = await merged.predict(noisy, t, embedding);
      expect(maxDiff(viaMerged.data, (await branch.predict(noisy, t, embedding)).data)).toBeLessThan(1e-4);
      expect(maxDiff(viaMerged.data, (await loaded.predict(noisy, t, embedding)).data)).toBeLessThan(1e-6);
      expect(maxDiff(viaMerged.data, (await loadedReference.predict(noisy, t, embedding)).data)).toBeLessThan(
        1e-6,
      );
    } finally {
      for (const u of [merged, branch, loaded, loadedReference]) await u.session.release();
    }
    await expect(loadDragLora(join(scratch, 'missing.safetensors'), unetModel)).rejects.toThrow(
      /cannot read the LoRA file/,
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('DragDiffusion end to end on the tiny bundle', () => {
  /** One pair dragged 12 px right in 3 iterations, 10 DDIM steps, seed 1: the short runs below differ only in `rest`. */
  const shortDrag = (b: StableDiffusionBundle, rest: Partial<Parameters<typeof dragDiffusion>[1]>) =>
    dragDiffusion(b, {
      image,
      handles: [[8, 8]],
      targets: [[20, 8]],
      dragSteps: 3,
      numInferenceSteps: 10,
      seed: 1,
      intraOpNumThreads: 1,
      ...rest,
    });

  it('runs every stage with progress, and returns the right shapes and bookkeeping', async () => {
    const stages: string[] = [];
    const mask = NDArray.zeros([1, 1, 32, 32]).map((_, i) => (i % 32 < 24 ? 1 : 0));
    const result = await dragDiffusion(bundle, {
      image,
      handles: [
        [8, 8],
        [20, 24],
      ],
      targets: [
        [18, 12],
        [12, 26],
      ],
      mask,
      prompt: 'a photo of a cat',
      loraSteps: 4,
      loraRank: 4,
      dragSteps: 12,
      numInferenceSteps: 20,
      seed: 3,
      intraOpNumThreads: 1,
      onProgress: (p) => {
        if (stages.at(-1) !== p.stage) stages.push(p.stage);
        expect(p.step).toBeLessThanOrEqual(p.total);
      },
    });
    expect(stages).toEqual(['lora', 'invert', 'drag', 'denoise']);
    expect(result.image.shape).toEqual([1, 3, 32, 32]);
    expect(Math.min(...result.image.data)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...result.image.data)).toBeLessThanOrEqual(1);
    for (const l of [result.latents, result.invertedLatents, result.draggedLatents])
      expect(l.shape).toEqual([1, 4, 8, 8]);
    expect(result.timestep).toBe(651); // 20 steps, strength 0.7: 14 inverted, timesteps[6] of [951, 901, …, 1]
    expect(result.feature).toMatchObject({ block: 0, shape: [1, 32, 8, 8] });
    expect(result.gridTargets).toEqual([
      [6, 9],
      [13, 6],
    ]);
    expect(result.handles).toHaveLength(2);
    expect(result.iterations).toBeLessThanOrEqual(12);
    expect(result.losses).toHaveLength(result.iterations);
    expect(result.loraLosses).toHaveLength(4);
    expect(result.mutualLayers).toHaveLength(2);
    expect(maxDiff(result.draggedLatents.data, result.invertedLatents.data)).toBeGreaterThan(0);
    // The target of pair 2 (x = 12 < 24) is inside the mask; nothing to warn about.
    expect(result.warnings).toEqual([]);
    for (const s of ['lora', 'invert', 'drag', 'denoise'] as const) {
      expect(result.stats[s].seconds).toBeGreaterThan(0);
      expect(result.stats[s].peakRssMiB).toBeGreaterThan(0);
    }
    expect(result.stats.invert.runs).toBe(14);
    expect(result.stats.drag.runs).toBeGreaterThanOrEqual(result.iterations);
    for (const s of ['lora', 'drag'] as const) {
      expect(result.stats[s].setupSeconds).toBeGreaterThan(0);
      expect(result.stats[s].setupSeconds).toBeLessThan(result.stats[s].seconds);
    }
    const { drag, lora } = result.stats;
    const perRun = (s: typeof drag) => (1000 * (s.seconds - s.setupSeconds)) / Math.max(1, s.runs);
    console.info(
      `[drag] ${result.iterations} iterations; drag: setup ${(1000 * drag.setupSeconds).toFixed(0)} ms, ${perRun(drag).toFixed(1)} ms per forward+backward; ` +
        `LoRA: setup ${(1000 * lora.setupSeconds).toFixed(0)} ms, ${perRun(lora).toFixed(1)} ms per step (batch 4); peak RSS ${drag.peakRssMiB.toFixed(0)} MiB`,
    );
  });

  it('without LoRA or mutual attention, and with a saved LoRA file reused', async () => {
    const plain = await shortDrag(bundle, { loraSteps: 0, mutualSelfAttention: false });
    expect(plain.lora).toBeUndefined();
    expect(plain.mutualLayers).toEqual([]);
    expect(plain.image.shape).toEqual([1, 3, 32, 32]);

    const first = await shortDrag(bundle, { loraSteps: 3, loraRank: 2 });
    const path = join(scratch, 'drag-lora.safetensors');
    await saveDragLora(path, first.lora!);
    const again = await shortDrag(bundle, { loraFile: path });
    expect(again.loraLosses).toEqual([]);
    expect(maxDiff(again.image.data, first.image.data)).toBeLessThan(1e-5);
  });

  it('leaves weights an export keeps in external data on disk, with checkpointing, and edits the same', async () => {
    // The same tiny bundle with every UNet weight moved to an external-data file (how SD 1.5 exports store theirs).
    const { cpSync, readdirSync } = await import('node:fs');
    const external = join(scratch, 'tiny-external');
    cpSync(TINY, external, { recursive: true });
    const unetPath = join(external, 'unet', 'model.onnx');
    await saveModel(await loadModel(unetPath), unetPath, { externalDataThreshold: 64 });
    const graph = await loadUnetGraph(unetPath);
    expect(graph.weightsOnDisk).toBe(true);
    expect(graph.placement.besides).toBe(unetPath);
    const onDisk = graphOf(graph.model).initializer.filter((t) => t.dataLocation === 1);
    expect(onDisk.length).toBeGreaterThan(10);
    expect(onDisk.every((t) => (t.rawData?.length ?? 0) === 0)).toBe(true);

    const edit = (b: StableDiffusionBundle) =>
      shortDrag(b, { loraSteps: 3, loraRank: 2, gradientCheckpointing: { segments: 3 } });
    const externalBundle = await StableDiffusionBundle.load(external, {
      device: 'cpu',
      intraOpNumThreads: 1,
    });
    try {
      const inMemory = await edit(bundle);
      const fromDisk = await edit(externalBundle);
      // Unmerged adapters (weights on disk) and merged ones (weights in memory) differ only by rounding.
      expect(fromDisk.losses.length).toBe(inMemory.losses.length);
      expect(maxDiff(fromDisk.loraLosses, inMemory.loraLosses)).toBeLessThan(1e-4);
      expect(maxDiff(fromDisk.draggedLatents.data, inMemory.draggedLatents.data)).toBeLessThan(1e-3);
      expect(maxDiff(fromDisk.image.data, inMemory.image.data)).toBeLessThan(2e-3);
      // Sessions were written beside the UNet and removed again.
      expect(readdirSync(join(external, 'unet')).filter((f) => f.startsWith('.'))).toEqual([]);
      // The bundle's own UNet was freed for the run and loads again when next used.
      expect(externalBundle.unet.session.isLoaded).toBe(false);
      expect(bundle.unet.session.isLoaded).toBe(true);
      const latents = NDArray.zeros([1, 4, 4, 4]);
      // Eight tokens of the UNet's context width (the sequence length is symbolic in the export).
      const context = NDArray.zeros([
        1,
        8,
        Number(bundle.unet.session.input('encoder_hidden_states').shape[2]),
      ]);
      const [again, reference] = await Promise.all([
        externalBundle.unet.predict(latents, 500, context),
        bundle.unet.predict(latents, 500, context),
      ]);
      expect(externalBundle.unet.session.isLoaded).toBe(true);
      expect(maxDiff(again.data, reference.data)).toBeLessThan(1e-5);
    } finally {
      await externalBundle.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('an EmojiWorld-style export: float16 weight storage, editkit_feature_tensors', () => {
  it('folds the casts, adapts the same projections, uses the configured features and runs end to end', async () => {
    // training/emoji/export.py's layout on the tiny UNet: float32 weights ≥ 256 elements stored as float16, each
    // followed by a Cast named after the weight, at the front of the graph; up-block outputs under the names
    // config.json lists.
    const { cpSync, writeFileSync } = await import('node:fs');
    const { saveModel, tensorDims, tensorToFloat32, onnx } = await import('../../src/autodiff/index.js');
    const dir = join(scratch, 'emoji-style');
    cpSync(TINY, dir, { recursive: true });
    const model = await loadModel(join(TINY, 'unet', 'model.onnx'));
    const g = graphOf(model);
    const casts: (typeof g.node)[number][] = [];
    g.initializer = g.initializer.map((t) => {
      if (t.dataType !== DataType.FLOAT || tensorToFloat32(t).length < 256) return t;
      casts.push(
        onnx.NodeProto.create({
          name: `${t.name}__cast`,
          opType: 'Cast',
          input: [`${t.name}__fp16`],
          output: [t.name],
          attribute: [
            onnx.AttributeProto.create({
              name: 'to',
              type: onnx.AttributeProto.AttributeType.INT,
              i: DataType.FLOAT,
            }),
          ],
        }),
      );
      return makeTensor(`${t.name}__fp16`, DataType.FLOAT16, tensorDims(t), tensorToFloat32(t));
    });
    const names = findUpBlockOutputs(model).map((tensor, i) => {
      g.node.push(
        onnx.NodeProto.create({
          name: `/feature_${i}`,
          opType: 'Identity',
          input: [tensor],
          output: [`up_block_${i}_output`],
        }),
      );
      return `up_block_${i}_output`;
    });
    g.node = [...casts, ...g.node];
    expect(casts.length).toBeGreaterThan(30);
    await saveModel(model, join(dir, 'unet', 'model.onnx'));
    const config = JSON.parse(readFileSync(join(TINY, 'unet', 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    writeFileSync(
      join(dir, 'unet', 'config.json'),
      JSON.stringify({ ...config, editkit_feature_tensors: names }),
    );

    const stored = await loadModel(join(dir, 'unet', 'model.onnx'));
    expect(foldInitializerCasts(stored)).toBe(casts.length);
    expect(graphOf(stored).node.some((n) => n.opType === 'Cast' && n.name.endsWith('__cast'))).toBe(false);
    expect(chooseFeatureTensor(stored, dir)).toEqual({
      tensor: 'up_block_0_output',
      block: 0,
      source: 'config',
    });

    const emojiStyle = await StableDiffusionBundle.load(dir, { device: 'cpu', intraOpNumThreads: 1 });
    try {
      const result = await dragDiffusion(emojiStyle, {
        image,
        handles: [[8, 8]],
        targets: [[20, 14]],
        prompt: 'a cat',
        loraSteps: 2,
        loraRank: 2,
        dragSteps: 3,
        numInferenceSteps: 10,
        seed: 1,
        intraOpNumThreads: 1,
      });
      expect(result.lora?.adapters).toHaveLength(32);
      expect(result.feature).toMatchObject({
        tensor: 'up_block_0_output',
        source: 'config',
        shape: [1, 32, 8, 8],
      });
      expect(result.mutualLayers).toHaveLength(2);
      expect(result.image.shape).toEqual([1, 3, 32, 32]);
    } finally {
      await emojiStyle.release();
    }
  });
});

describe('benchmark measures', () => {
  it('grades with a DIFT tensor other than the one the drag supervises (bundled UNet: 3 up blocks)', async () => {
    const { DiftFeaturizer, chooseFeatureTensor } = await import('../../src/pipelines/drag/index.js');
    const { loadModel } = await import('../../src/autodiff/index.js');
    const emoji = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu' });
    const dift = await DiftFeaturizer.create(emoji, { ensemble: 1, intraOpNumThreads: 1 });
    try {
      const supervised = chooseFeatureTensor(
        await loadModel(join(EMOJI_LDM, 'unet', 'model.onnx')),
        EMOJI_LDM,
      );
      expect(supervised.block).toBe(1);
      expect(dift.tensor).not.toBe(supervised.tensor);
      expect(dift.tensor).toBe('up_block_2_output');
    } finally {
      await dift.release();
      await emoji.release();
    }
  });

  it('DIFT matching finds a point in its own image; template matching finds the moved sprite', async () => {
    const { DiftFeaturizer, matchPoints } = await import('../../src/pipelines/drag/index.js');
    const { locateSprite } = await import('../../src/eval/drag_metrics.js');
    const { applicableScene, renderScene, sampleEdit, splitSeed } = await import('../../src/world/index.js');
    const { rgb8ToTensor } = await import('../../src/image/io.js');
    const dift = await DiftFeaturizer.create(bundle, { ensemble: 2, intraOpNumThreads: 1 });
    try {
      expect(dift.tensor).toBe('/up_blocks.1/attentions.1/Add_output_0');
      const f = await dift.features(image, 'a cat');
      expect(f.shape).toEqual([1, 16, 32, 32]);
      const { matched, distances } = matchPoints(
        f,
        f,
        [
          [5, 7],
          [20, 11],
        ],
        [
          [8, 11],
          [20, 11],
        ],
      );
      expect(matched).toEqual([
        [5, 7],
        [20, 11],
      ]);
      expect(distances).toEqual([5, 0]);
    } finally {
      await dift.release();
    }
    const seed = splitSeed('heldout', 3);
    const edit = await sampleEdit(applicableScene(seed, 'move', { width: 64, height: 64 }), 'move', seed);
    const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
    const object = edit.target.objects[edit.changed.target[0]];
    const moved = edit.source.objects[edit.changed.source[0]];
    const at = (o: typeof object) => [o.x * 64, o.y * 64];
    const shift = Math.hypot(at(object)[0] - at(moved)[0], at(object)[1] - at(moved)[1]);
    const toTensor = (data: Uint8Array) => rgb8ToTensor({ data, width: 64, height: 64 }, '[0,1]');
    expect((await locateSprite(toTensor(target.image), edit.target, object)).distance).toBeLessThanOrEqual(1);
    expect(
      Math.abs((await locateSprite(toTensor(source.image), edit.target, object)).distance - shift),
    ).toBeLessThanOrEqual(1.5);
  });
});

describe('DragDiffusion on the bundled EmojiWorld model', () => {
  it('moves the object toward the target', async () => {
    const { applicableScene, editVocabulary, renderScene, sampleEdit, splitSeed } =
      await import('../../src/world/index.js');
    const world = bundledWorldSubset().scene;
    const { rgb8ToTensor } = await import('../../src/image/io.js');
    const { locateSprite } = await import('../../src/eval/drag_metrics.js');
    const emoji = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu' });
    try {
      const { UserError } = await import('../../src/util/errors.js');
      // The first three held-out scenes where a move applies (some `core` objects fill the frame) and the moved
      // object has no twin.
      const before: number[] = [];
      const after: number[] = [];
      for (let index = 0; before.length < 3; index++) {
        const seed = splitSeed('heldout', index);
        let scene;
        try {
          scene = applicableScene(seed, 'move', world);
        } catch (error) {
          if (error instanceof UserError) continue;
          throw error;
        }
        const edit = await sampleEdit(scene, 'move', seed, editVocabulary(world));
        const moved = edit.target.objects[edit.changed.target[0]];
        // Template matching cannot tell two sprites of one class apart ("two penguins"): use scenes without twins.
        if (edit.target.objects.filter((o) => o.class === moved.class).length > 1) continue;
        const source = await renderScene(edit.source);
        const input = rgb8ToTensor({ data: source.image, width: edit.width, height: edit.height }, '[-1,1]');
        const mask = new NDArray(
          Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
          [1, 1, edit.height, edit.width],
        );
        // Everything is the official default (80 LoRA steps, inversion to 0.7 of 50 steps, 80 drag iterations).
        const result = await dragDiffusion(emoji, {
          image: input,
          handles: edit.drag!.handles,
          targets: edit.drag!.targets,
          mask,
          prompt: edit.sourceCaption,
          seed: 0,
        });
        const object = edit.target.objects[edit.changed.target[0]];
        before.push(
          (
            await locateSprite(
              input.map((v) => v / 2 + 0.5),
              edit.target,
              object,
            )
          ).distance,
        );
        after.push((await locateSprite(result.image, edit.target, object)).distance);
      }
      const mean = (xs: number[]) => xs.reduce((p, v) => p + v, 0) / xs.length;
      console.info(
        `[drag, emoji-ldm] moved sprite's centre to its target: input ${before.map((d) => d.toFixed(1)).join(', ')} px → result ${after.map((d) => d.toFixed(1)).join(', ')} px`,
      );
      // Issue 9's bar is a ≥ 50% cut in (DIFT) Mean Distance; here the ground-truth sprite distance must halve.
      expect(mean(after)).toBeLessThanOrEqual(0.5 * mean(before));
    } finally {
      await emoji.release();
    }
  }, 600_000);
});
