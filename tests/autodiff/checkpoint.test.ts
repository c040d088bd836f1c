/**
 * Gradient checkpointing (src/autodiff/checkpoint.ts): the rewritten gradient graph gives the same gradients, runs
 * the recomputed segments only from gated inputs, keeps fewer activations alive, and splits by a byte budget.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildGradient,
  estimatePeakLiveBytes,
  gradientSessionSettings,
  loadModel,
  mseLoss,
  sessionFromModel,
} from '../../src/autodiff/index.js';
import { Graph } from '../../src/autodiff/graph.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import type { ModelProto } from '../../src/autodiff/onnx_io.js';
import { int64Tensor, randTensor, runModel, TinyModel, values } from './harness.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** 16 layers of tanh(h·W), a residual every 4 layers and a softmax in the middle: a small deep net. */
function deepChain(): ModelProto {
  const m = new TinyModel({ dtype: 'float32' });
  let h = m.input('x', [8, 32]);
  let skip = h;
  for (let i = 0; i < 16; i++) {
    h = m.node('Tanh', [m.node('MatMul', [h, m.randInit(`w${i}`, [32, 32], 100 + i, 0.3)])]);
    if (i === 8) h = m.node('Softmax', [h], { axis: -1 });
    if (i % 4 === 3) {
      h = m.node('Add', [h, skip]);
      skip = h;
    }
  }
  const loss = m.node('ReduceSum', [m.node('Mul', [h, h])], { keepdims: 0 }, ['loss']);
  return m.output(loss).model();
}

async function gradients(model: ModelProto, segments?: number) {
  const g = buildGradient(model, {
    loss: 'loss',
    wrt: ['x', 'w3'],
    checkpoint: segments ? { segments } : undefined,
  });
  const out = await runModel(g.model, { x: randTensor('float32', [8, 32], 7) });
  return { result: g, x: values(out[g.gradients.x]), w3: values(out[g.gradients.w3]) };
}

function maxRelative(a: readonly number[], b: readonly number[]): number {
  const scale = Math.max(...b.map(Math.abs));
  return Math.max(...a.map((v, i) => Math.abs(v - b[i]))) / scale;
}

describe('gradient checkpointing', () => {
  it('gives the gradients of the plain gradient graph', async () => {
    const plain = await gradients(deepChain());
    for (const segments of [2, 4, 8]) {
      const checkpointed = await gradients(deepChain(), segments);
      expect(checkpointed.result.checkpoint?.segments).toBe(segments);
      expect(checkpointed.result.checkpoint?.recomputedNodes).toBeGreaterThan(0);
      expect(maxRelative(checkpointed.x, plain.x)).toBeLessThan(1e-6);
      expect(maxRelative(checkpointed.w3, plain.w3)).toBeLessThan(1e-6);
    }
  });

  it('makes the backward pass read recomputed activations, gated on the incoming gradient', async () => {
    const { result } = await gradients(deepChain(), 4);
    const graph = Graph.fromModel(result.model);
    const recomputed = graph.nodes.filter((n) => /\/recompute\d+$/.test(n.name));
    expect(recomputed.length).toBe(result.checkpoint?.recomputedNodes);
    // Every recomputed node reads only other recomputed tensors, gated inputs (Add of a Cast(Greater(s, s))),
    // initializers or constants: none of the original activations.
    const recomputedOutputs = new Set(recomputed.flatMap((n) => n.output));
    for (const n of recomputed) {
      for (const input of n.input) {
        if (recomputedOutputs.has(input) || graph.isInitializer(input)) continue;
        const producer = graph.producer(input);
        expect(producer?.opType, `${n.name} reads ${input}`).toBe('Add');
        expect(producer?.name).toMatch(/^checkpoint\/segment\d+\//);
      }
    }
    // And the plan keeps fewer activations alive at once.
    const plain = buildGradient(deepChain(), { loss: 'loss', wrt: ['x', 'w3'] });
    expect(estimatePeakLiveBytes(graph)).toBeLessThan(estimatePeakLiveBytes(Graph.fromModel(plain.model)));
  });

  it('cuts more segments for a smaller byte budget, and refuses bad settings', () => {
    const segmentsFor = (budgetBytes: number) =>
      buildGradient(deepChain(), { loss: 'loss', wrt: ['x'], checkpoint: { budgetBytes } }).checkpoint!
        .segments;
    expect(segmentsFor(4096)).toBeGreaterThan(segmentsFor(16384));
    expect(segmentsFor(1e9)).toBe(1);
    expect(() =>
      buildGradient(deepChain(), { loss: 'loss', wrt: ['x'], checkpoint: { segments: 0 } }),
    ).toThrow(/positive integer/);
    expect(() =>
      buildGradient(deepChain(), { loss: 'loss', wrt: ['x'], checkpoint: { budgetBytes: -1 } }),
    ).toThrow(/positive/);
  });

  it('gives the bundled UNet the same latent gradient (models/emoji-ldm, 32² latents)', async () => {
    const model = await loadModel(join(ROOT, 'models', 'emoji-ldm', 'unet', 'model.onnx'));
    const shapes = { sample: [1, 8, 32, 32], timestep: [1], encoder_hidden_states: [1, 24, 128] };
    const build = (segments?: number) =>
      buildGradient(model, {
        loss: mseLoss('out_sample', { input: 'target' }),
        wrt: ['sample'],
        inputShapes: shapes,
        checkpoint: segments ? { segments } : undefined,
      });
    const feeds = {
      sample: randTensor('float32', shapes.sample, 1),
      timestep: int64Tensor([1], [500]),
      encoder_hidden_states: randTensor('float32', shapes.encoder_hidden_states, 2),
      target: randTensor('float32', shapes.sample, 3),
    };
    const run = async (segments?: number) => {
      const g = build(segments);
      const out = await runModel(g.model, feeds);
      return { g, grad: values(out[g.gradients.sample]) };
    };
    const plain = await run();
    const checkpointed = await run(6);
    expect(checkpointed.g.checkpoint?.segments).toBe(6);
    expect(maxRelative(checkpointed.grad, plain.grad)).toBeLessThan(1e-5);
    expect(estimatePeakLiveBytes(Graph.fromModel(checkpointed.g.model))).toBeLessThan(
      0.8 * estimatePeakLiveBytes(Graph.fromModel(plain.g.model)),
    );
  });

  it('runs checkpointed gradient models without the arena or pre-packed weight copies, unless told otherwise', async () => {
    const base = { device: 'cpu' as const, intraOpNumThreads: 1 };
    expect(gradientSessionSettings(base, undefined)).toEqual(base);
    expect(gradientSessionSettings(base, { segments: 4 })).toEqual({
      ...base,
      cpuMemoryArena: false,
      prepacking: false,
    });
    expect(gradientSessionSettings({ ...base, prepacking: true }, { segments: 4 }).prepacking).toBe(true);
    // ORT accepts the settings and gives the same gradient as a default session.
    const g = buildGradient(deepChain(), { loss: 'loss', wrt: ['x'], checkpoint: { segments: 4 } });
    const x = randTensor('float32', [8, 32], 7);
    const plain = await runModel(g.model, { x });
    const session = await sessionFromModel(
      g.model,
      gradientSessionSettings(base, { segments: 4 }),
      'settings',
    );
    try {
      const out = await session.run({ x: new NDArray(Float32Array.from(x.data as Float32Array), [8, 32]) });
      expect(maxRelative(Array.from(out[g.gradients.x].data), values(plain[g.gradients.x]))).toBeLessThan(
        1e-6,
      );
    } finally {
      await session.release();
    }
  });
});
