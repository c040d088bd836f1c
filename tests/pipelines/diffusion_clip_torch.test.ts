/**
 * DiffusionCLIP's whole step loss (UNet + LoRA → x̂₀ → VAE decoder → CLIP views → directional + L1 + global) and its
 * gradients against PyTorch: training/fixtures/make_diffusion_clip_reference.py builds tiny networks from the
 * project's PyTorch modules, exports them, and computes the same loss in float64 with torch.autograd for fixed
 * inputs (the CLIP views' noise is an input, so nothing here is random). This test builds EditKit's step-loss
 * graph on the exported files and compares the loss, ε, and the gradients with respect to x_t, the LoRA factors
 * of two targets (MatMul and Conv) and two weights trained directly (as `--adapter full`).
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addLora,
  cloneModel,
  graphOf,
  loadModel,
  setTensorValues,
  tensorDims,
  tensorToFloat32,
  type ModelProto,
} from '../../src/autodiff/index.js';
import { sessionFromModel } from '../../src/pipelines/drag/unet_models.js';
import {
  buildClipLossModel,
  CLIP_LOSS_INPUTS,
  CLIP_VIEWS,
  type ClipView,
} from '../../src/pipelines/diffusion_clip/models.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import type { ModelSession } from '../../src/runtime/session.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'diffusion_clip', 'torch_reference');
/** max |EditKit − torch| / max |torch| per compared tensor (float32 graph against a float64 reference). */
const TOLERANCE = 1e-4;

interface Reference {
  files: { unet: string; vae_decoder: string; image_encoder: string };
  output: string;
  image_size: [number, number];
  clip_processing: { size: number; mean: [number, number, number]; std: [number, number, number] };
  views: ClipView[];
  timestep: number;
  x0_coefficients: [number, number];
  scaling_factor: number;
  lambda_clip: number;
  lambda_l1: number;
  lambda_global: number;
  lora: {
    rank: number;
    alpha: number;
    targets: { wrt: string; a: string; b: string; grad_a: string; grad_b: string }[];
  };
  inputs: Record<
    'sample' | 'encoder_hidden_states' | 'source_image' | 'view_noise' | 'text_direction' | 'target_text',
    string
  >;
  loss: number;
  clip_loss: number;
  l1: number;
  global_loss: number;
  eps: string;
  gradients: { wrt: string; file: string }[];
}

const reference = JSON.parse(readFileSync(join(FIXTURE, 'reference.json'), 'utf8')) as Reference;
const npy = (file: string) => readNpy(join(FIXTURE, file));

function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}

interface Comparison {
  /** Relative error of each compared quantity, by name. */
  errors: Record<string, number>;
  maxAbs: Record<string, number>;
}

let unet: ModelProto;
let vae: ModelProto;
let clipImage: ModelProto;
const sessions: ModelSession[] = [];

beforeAll(async () => {
  unet = await loadModel(join(FIXTURE, reference.files.unet));
  vae = await loadModel(join(FIXTURE, reference.files.vae_decoder));
  clipImage = await loadModel(join(FIXTURE, reference.files.image_encoder));
});
afterAll(async () => {
  for (const s of sessions) await s.release();
});

/** Builds the step-loss graph on the given networks, runs it on the fixture's inputs, compares with torch. */
async function compareWithTorch(
  vaeDecoder: ModelProto,
  loraAlpha = reference.lora.alpha,
): Promise<Comparison> {
  const targets = reference.lora.targets;
  const lora = addLora(unet, {
    rank: reference.lora.rank,
    alpha: loraAlpha,
    prefix: 'unet.',
    targets: (t) => targets.some((x) => x.wrt === t.weight),
  });
  expect(lora.adapters.map((a) => a.weight).sort()).toEqual(targets.map((t) => t.wrt).sort());
  const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
  const factorValues: Record<string, NDArray> = {};
  const factorGradients: Record<string, string> = {};
  for (const t of targets) {
    const adapter = lora.adapters.find((a) => a.weight === t.wrt)!;
    for (const [name, file, grad] of [
      [adapter.a, t.a, t.grad_a],
      [adapter.b, t.b, t.grad_b],
    ] as const) {
      const values = await npy(file);
      expect(tensorDims(inits.get(name)!)).toEqual(values.shape);
      setTensorValues(inits.get(name)!, values.data);
      factorValues[name] = values;
      factorGradients[name] = grad;
    }
  }
  const direct = reference.gradients.filter((g) => g.wrt !== 'sample');
  const parameters = [...Object.keys(factorValues), ...direct.map((g) => g.wrt)];
  const sample = await npy(reference.inputs.sample);
  const context = await npy(reference.inputs.encoder_hidden_states);
  const model = buildClipLossModel(lora.model, vaeDecoder, clipImage, {
    output: reference.output,
    sampleShape: sample.shape,
    contextShape: context.shape,
    timestepShape: [1],
    scalingFactor: reference.scaling_factor,
    clipProcessing: reference.clip_processing,
    imageSize: reference.image_size,
    lambdaClip: reference.lambda_clip,
    lambdaL1: reference.lambda_l1,
    lambdaGlobal: reference.lambda_global,
    views: reference.views,
    parameters,
    sampleGradient: true,
  });
  const session = await sessionFromModel(model.model, { device: 'cpu', intraOpNumThreads: 2 }, 'dclip_torch');
  sessions.push(session);
  const weights = new Map(graphOf(unet).initializer.map((t) => [t.name, t]));
  const feeds: Record<string, NDArray> = {
    sample,
    timestep: NDArray.full([1], reference.timestep),
    encoder_hidden_states: context,
    [CLIP_LOSS_INPUTS.x0Coefficients]: new NDArray(Float32Array.from(reference.x0_coefficients), [2]),
    [CLIP_LOSS_INPUTS.sourceImage]: await npy(reference.inputs.source_image),
    // The paper's loss: the directional term measures the change from x₀ too.
    [CLIP_LOSS_INPUTS.referenceImage]: await npy(reference.inputs.source_image),
    [CLIP_LOSS_INPUTS.viewNoise]: await npy(reference.inputs.view_noise),
    [CLIP_LOSS_INPUTS.textDirection]: await npy(reference.inputs.text_direction),
    [CLIP_LOSS_INPUTS.targetText]: await npy(reference.inputs.target_text),
    ...factorValues,
    ...Object.fromEntries(
      direct.map((g) => {
        const t = weights.get(g.wrt)!;
        return [g.wrt, new NDArray(Float32Array.from(tensorToFloat32(t)), tensorDims(t))];
      }),
    ),
  };
  const fetch = [
    model.loss,
    model.clipLoss,
    model.l1,
    model.globalLoss!,
    model.output,
    model.gradients.sample,
    ...parameters.map((p) => model.gradients[p]),
  ];
  const out = await session.run(feeds, fetch);
  const errors: Record<string, number> = {};
  const maxAbs: Record<string, number> = {};
  const record = (name: string, got: ArrayLike<number>, want: ArrayLike<number>) => {
    errors[name] = relativeError(got, want);
    let m = 0;
    for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]));
    maxAbs[name] = m;
  };
  record('loss', out[model.loss].data, [reference.loss]);
  record('clip loss', out[model.clipLoss].data, [reference.clip_loss]);
  record('l1', out[model.l1].data, [reference.l1]);
  record('global term', out[model.globalLoss!].data, [reference.global_loss]);
  record('ε', out[model.output].data, (await npy(reference.eps)).data);
  for (const g of reference.gradients)
    record(`d loss/d ${g.wrt}`, out[model.gradients[g.wrt]].data, (await npy(g.file)).data);
  for (const [name, file] of Object.entries(factorGradients))
    record(`d loss/d ${name}`, out[model.gradients[name]].data, (await npy(file)).data);
  return { errors, maxAbs };
}

describe('DiffusionCLIP step loss against PyTorch (tiny networks)', () => {
  it('uses the pipeline’s own CLIP views', () => {
    expect(reference.views).toEqual(CLIP_VIEWS.map((v) => [...v]));
  });

  it('loss, ε and the gradients of x_t, LoRA factors (MatMul, Conv) and two weights match torch', async () => {
    const { errors, maxAbs } = await compareWithTorch(vae);
    for (const [name, e] of Object.entries(errors))
      console.info(
        `[dclip-torch] ${name}: max|Δ| ${maxAbs[name].toExponential(2)}, relative ${e.toExponential(2)}`,
      );
    // x_t, 2 × (A, B), 2 weights, plus loss, its three terms and ε.
    expect(Object.keys(errors)).toHaveLength(12);
    for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOLERANCE);
  });

  it('fails when the networks differ from torch’s: a VAE decoder weight moved by 0.1 %', async () => {
    const moved = cloneModel(vae);
    const weight = graphOf(moved).initializer.find((t) => t.name.includes('conv_out.weight'))!;
    setTensorValues(
      weight,
      tensorToFloat32(weight).map((v) => v * 1.001),
    );
    const { errors } = await compareWithTorch(moved);
    const worst = Math.max(...Object.values(errors));
    console.info(`[dclip-torch] VAE weight moved: worst relative error ${worst.toExponential(2)}`);
    expect(worst).toBeGreaterThan(TOLERANCE);
  });

  it('fails when the LoRA scale differs from torch’s (alpha = rank: scale 1 instead of 2)', async () => {
    const { errors } = await compareWithTorch(vae, reference.lora.rank);
    const worst = Math.max(...Object.values(errors));
    console.info(`[dclip-torch] LoRA scale 1: worst relative error ${worst.toExponential(2)}`);
    expect(worst).toBeGreaterThan(TOLERANCE);
  });
});
