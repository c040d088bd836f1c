/**
 * Differentiating real torch.onnx exports (opset 14, raw, runtime shapes): the tiny SD bundle's UNet, VAE decoder
 * and encoder from tests/fixtures/bundles (see training/fixtures/README.md). Gradients are checked against
 * central finite differences in float32 (Conv has no double kernel), step 1e-2, on random subsets of elements.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  buildGradient,
  customLoss,
  DataType,
  extractSubgraph,
  loadModel,
  makeValueInfo,
  mseLoss,
} from '../../src/autodiff/index.js';
import { fromFloat16Array, toFloat16Array } from '../../src/runtime/float16.js';
import { readNpy } from '../../src/util/npy.js';
import { addLora } from '../../src/autodiff/lora.js';
import { graphOf, type ModelProto } from '../../src/autodiff/onnx_io.js';
import { expectGradients, int64Tensor, opTypes, randTensor, runModel, values } from './harness.js';

const BUNDLE = join(import.meta.dirname, '..', 'fixtures', 'bundles', 'tiny-sd');

function inputOf(model: ModelProto, nodeName: string, index: number): string {
  const node = graphOf(model).node.find((n) => n.name === nodeName);
  if (!node) throw new Error(`no node ${nodeName}`);
  return node.input[index];
}

describe('tiny SD UNet export', () => {
  it('gradients wrt latents, text embeddings, a conv weight and an attention to_q weight', async () => {
    const unet = await loadModel(join(BUNDLE, 'unet', 'model.onnx'));
    const toQ = inputOf(unet, '/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul', 1);
    const feeds = {
      sample: randTensor('float32', [1, 4, 8, 8], 1),
      timestep: int64Tensor([1], [500]),
      encoder_hidden_states: randTensor('float32', [1, 5, 32], 2),
    };
    const r = await expectGradients('tiny UNet', unet, {
      wrt: ['sample', 'encoder_hidden_states', 'conv_in.weight', toQ],
      feeds,
      type: 'float32',
      maxChecks: 12,
    });
    expect([...opTypes(r.gradientModel)].every((op) => !op.includes('.'))).toBe(true);
  });

  it('outputs a decoder block feature and differentiates a loss on it; the forward is cut after that block', async () => {
    const unet = await loadModel(join(BUNDLE, 'unet', 'model.onnx'));
    const feature = '/up_blocks.0/upsampler/conv/Conv_output_0';
    const g = buildGradient(unet, { loss: mseLoss(feature), wrt: ['sample'], outputs: [feature] });
    expect(g.outputs).toEqual([feature, g.loss, 'grad_sample']);
    // conv_out is after the feature: pruned.
    expect(graphOf(g.model).node.some((n) => n.name === '/conv_out/Conv')).toBe(false);
    const feeds = {
      sample: randTensor('float32', [2, 4, 8, 8], 3),
      timestep: int64Tensor([1], [10]),
      encoder_hidden_states: randTensor('float32', [2, 5, 32], 4),
    };
    const cut = await runModel(extractSubgraph(unet, [feature]), feeds);
    const target = randTensor('float32', cut[feature].dims.map(Number), 5);
    const out = await runModel(g.model, { ...feeds, [`${feature}_target`]: target });
    // Same forward, up to ONNX Runtime fusing the two graphs differently.
    const a = values(out[feature]);
    const b = values(cut[feature]);
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThan(1e-5);
    expect(out.grad_sample.dims).toEqual([2, 4, 8, 8]);
    expect(values(out.grad_sample).some((v) => v !== 0)).toBe(true);
  });

  it('runs at another spatial size than it was built for (runtime shapes)', async () => {
    const unet = await loadModel(join(BUNDLE, 'unet', 'model.onnx'));
    const g = buildGradient(unet, { loss: mseLoss('out_sample'), wrt: ['sample'] });
    for (const [h, w] of [
      [8, 8],
      [16, 8],
    ]) {
      const out = await runModel(g.model, {
        sample: randTensor('float32', [1, 4, h, w], 1),
        timestep: int64Tensor([1], [3]),
        encoder_hidden_states: randTensor('float32', [1, 7, 32], 2),
        out_sample_target: randTensor('float32', [1, 4, h, w], 3),
      });
      expect(out.grad_sample.dims).toEqual([1, 4, h, w]);
    }
  });
});

describe('parity with PyTorch autograd (float64) on the tiny UNet', () => {
  it('matches every element of dL/d sample, text embeddings, conv_in.weight and to_q', async () => {
    // References from training/reference/autodiff_unet_reference.py: L = Σ unet(sample, 500, ehs) · projection.
    const ref = join(import.meta.dirname, '..', 'fixtures', 'autodiff', 'unet');
    const npy = async (name: string) => readNpy(join(ref, `${name}.npy`));
    const toQ = readFileSync(join(ref, 'to_q_initializer.txt'), 'utf8').trim();
    const unet = await loadModel(join(BUNDLE, 'unet', 'model.onnx'));
    const projection = await npy('projection');
    const loss = customLoss('projection', (b, graph) => {
      graph.addInput(makeValueInfo('projection', DataType.FLOAT, [...projection.shape]));
      return b.reduce('ReduceSum', b.mul('out_sample', 'projection'), undefined, false);
    });
    const wrt = ['sample', 'encoder_hidden_states', 'conv_in.weight', toQ];
    const g = buildGradient(unet, { loss, wrt, outputs: ['out_sample'] });
    const tensorOf = (a: Awaited<ReturnType<typeof npy>>) => new ort.Tensor('float32', a.data, [...a.shape]);
    const out = await runModel(g.model, {
      sample: tensorOf(await npy('sample')),
      encoder_hidden_states: tensorOf(await npy('encoder_hidden_states')),
      timestep: int64Tensor([1], [500]),
      projection: tensorOf(projection),
    });
    const expected: Record<string, string> = {
      out_sample: 'out',
      grad_sample: 'grad_sample',
      grad_encoder_hidden_states: 'grad_encoder_hidden_states',
      'grad_conv_in.weight': 'grad_conv_in_weight',
      [`grad_${toQ}`]: 'grad_to_q_weight_t',
    };
    for (const [name, file] of Object.entries(expected)) {
      const want = (await npy(file)).data;
      const got = values(out[name]);
      expect(got.length).toBe(want.length);
      const scale = Math.max(...Array.from(want, Math.abs));
      const err = Math.max(...got.map((v, i) => Math.abs(v - want[i]))) / scale;
      console.info(`[torch parity] ${name}: max error / max |value| = ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
    }
  });
});

describe('LoRA on the tiny UNet export', () => {
  it('adapts every attention projection and trains through the gradient model', async () => {
    const unet = await loadModel(join(BUNDLE, 'unet', 'model.onnx'));
    const lora = addLora(unet, { rank: 4, prefix: 'unet.' });
    // 4 transformer blocks (down, mid, up) × 2 attentions × q/k/v/out.
    expect(lora.adapters.length).toBe(32);
    expect(lora.adapters[0].module).toBe('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q');
    const g = buildGradient(lora.model, {
      loss: mseLoss('out_sample'),
      wrt: lora.parameters,
      promote: true,
      keepPromotedDefaults: true,
    });
    const out = await runModel(g.model, {
      sample: randTensor('float32', [1, 4, 8, 8], 1),
      timestep: int64Tensor([1], [100]),
      encoder_hidden_states: randTensor('float32', [1, 5, 32], 2),
      out_sample_target: randTensor('float32', [1, 4, 8, 8], 3),
    });
    const first = lora.adapters[0];
    // B = 0 at the start: A gets no gradient yet, B does.
    expect(values(out[g.gradients[first.a]]).every((v) => v === 0)).toBe(true);
    expect(values(out[g.gradients[first.b]]).some((v) => v !== 0)).toBe(true);
  });
});

describe('float16 export (tiny-sd-fp16)', () => {
  it('the VAE decoder gradient runs in float16 and agrees with the float32 export', async () => {
    const fp16 = await loadModel(join(BUNDLE, '..', 'tiny-sd-fp16', 'vae_decoder', 'model.onnx'));
    const fp32 = await loadModel(join(BUNDLE, 'vae_decoder', 'model.onnx'));
    const latents = randTensor('float32', [1, 4, 4, 4], 1, 0.5);
    const target = randTensor('float32', [1, 3, 16, 16], 2, 0.5);
    const g32 = buildGradient(fp32, { loss: mseLoss('sample'), wrt: ['latent_sample'] });
    const g16 = buildGradient(fp16, { loss: mseLoss('sample'), wrt: ['latent_sample'] });
    const half = (t: ort.Tensor) => new ort.Tensor('float16', toFloat16Array(t.data as Float32Array), t.dims);
    const a = values(
      (await runModel(g32.model, { latent_sample: latents, sample_target: target })).grad_latent_sample,
    );
    const out16 = await runModel(g16.model, { latent_sample: half(latents), sample_target: half(target) });
    expect(out16.grad_latent_sample.type).toBe('float16');
    const b = Array.from(fromFloat16Array(out16.grad_latent_sample.data as Uint16Array));
    const scale = Math.max(...a.map(Math.abs));
    const err = Math.max(...a.map((v, i) => Math.abs(v - b[i]))) / scale;
    console.info(`[float16] VAE decoder grad vs float32: max error / max |value| = ${err.toExponential(2)}`);
    expect(err).toBeLessThan(3e-2);
  });
});

describe('tiny SD text encoder export', () => {
  it('gradient wrt the token embedding table (textual inversion), through Gather, the causal mask and the pooled GatherElements', async () => {
    const te = await loadModel(join(BUNDLE, 'text_encoder', 'model.onnx'));
    const ids = [712, 5, 77, 5, 713, 713];
    const used = [...new Set(ids)];
    const indices = used.flatMap((t) => [t * 32, t * 32 + 7, t * 32 + 31]);
    const r = await expectGradients('tiny text encoder', te, {
      wrt: ['te.token_embedding.weight'],
      feeds: { input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]) },
      indices: { 'te.token_embedding.weight': indices },
      type: 'float32',
    });
    const grad = r.analytic['te.token_embedding.weight'];
    // Rows of tokens that are not in the prompt get nothing.
    expect(grad.slice(100 * 32, 101 * 32).every((v) => v === 0)).toBe(true);
    expect(grad.slice(5 * 32, 6 * 32).some((v) => v !== 0)).toBe(true);
  });
});

describe('tiny SD VAE exports', () => {
  it('decoder: gradient wrt the latents (DiffusionCLIP / DragDiffusion decode path)', async () => {
    const vae = await loadModel(join(BUNDLE, 'vae_decoder', 'model.onnx'));
    await expectGradients('tiny VAE decoder', vae, {
      wrt: ['latent_sample', 'vae.decoder.conv_in.weight'],
      feeds: { latent_sample: randTensor('float32', [1, 4, 4, 4], 1) },
      type: 'float32',
      maxChecks: 12,
    });
  });

  it('encoder: gradient wrt the image (Pad, Slice of the mean)', async () => {
    const vae = await loadModel(join(BUNDLE, 'vae_encoder', 'model.onnx'));
    await expectGradients('tiny VAE encoder', vae, {
      wrt: ['sample'],
      feeds: { sample: randTensor('float32', [1, 3, 16, 16], 1) },
      type: 'float32',
      maxChecks: 12,
    });
  });
});
