/**
 * LoRA rewrite: target selection, PEFT naming and layout, equivalence with merged weights, gradients through the
 * branches (finite differences), a fit on a tiny attention block, and adapter files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGradient, mseLoss } from '../../src/autodiff/index.js';
import {
  addLora,
  findLoraTargets,
  loadLora,
  loraInitStd,
  mergedWeight,
  saveLora,
  type LoraInitA,
} from '../../src/autodiff/lora.js';
import { fromPeftLayout, LORA_KEY_LAYOUTS, toPeftLayout } from '../../src/autodiff/lora_layouts.js';
import { graphOf, setTensorValues, tensorToFloat32, type ModelProto } from '../../src/autodiff/onnx_io.js';
import { Adam } from '../../src/autodiff/optim.js';
import { float32ToSafeTensor, readSafetensors, writeSafetensors } from '../../src/autodiff/safetensors.js';
import {
  createSession,
  expectGradients,
  randTensor,
  runModel,
  TinyModel,
  values,
  type FloatType,
} from './harness.js';

const scratch = mkdtempSync(join(tmpdir(), 'editkit-lora-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A self-attention block as torch exports it: q/k/v/out projections are MatMul with transposed weights named
 * onnx::MatMul_*, nodes named /attn1/to_q/MatMul …; plus a Gemm (proj, transB=1) and a 1×1 Conv outside attention.
 */
function attentionBlock(type: FloatType = 'float32', dim = 8): ModelProto {
  const m = new TinyModel({ opset: 17, dtype: type });
  const x = m.input('x', [2, 5, dim]);
  const named = (
    opType: string,
    name: string,
    inputs: string[],
    attrs?: Record<string, number | number[]>,
  ) => {
    const out = m.node(opType, inputs, attrs);
    m.nodes[m.nodes.length - 1].name = name;
    return out;
  };
  const proj = (p: string, input: string, seed: number) =>
    named('MatMul', `/attn1/${p}/MatMul`, [
      input,
      m.randInit(`onnx::MatMul_${seed}`, [dim, dim], seed, 1 / Math.sqrt(dim)),
    ]);
  const q = proj('to_q', x, 1);
  const k = proj('to_k', x, 2);
  const v = proj('to_v', x, 3);
  const scores = m.node('Mul', [
    m.node('MatMul', [q, m.node('Transpose', [k], { perm: [0, 2, 1] })]),
    m.init('s', [], [1 / Math.sqrt(dim)]),
  ]);
  const attn = m.node('MatMul', [m.node('Softmax', [scores], { axis: -1 }), v]);
  const out = m.node('Add', [
    named('MatMul', '/attn1/to_out.0/MatMul', [
      attn,
      m.randInit('onnx::MatMul_4', [dim, dim], 4, 1 / Math.sqrt(dim)),
    ]),
    x,
  ]);
  const flat = m.node('Reshape', [out, m.ints('flat', [-1, dim])]);
  const g = named(
    'Gemm',
    '/proj/Gemm',
    [flat, m.randInit('proj.weight', [dim, dim], 5, 0.3), m.randInit('proj.bias', [dim], 6, 0.1)],
    { transB: 1 },
  );
  const img = m.node('Reshape', [g, m.ints('img', [2, dim, 5, 1])]);
  m.output(named('Conv', '/conv/Conv', [img, m.randInit('conv.weight', [3, dim, 1, 1], 7, 0.3)]));
  return m.model();
}

describe('targets and structure', () => {
  it('finds MatMul/Gemm/Conv weights with module names from the node names', () => {
    const targets = findLoraTargets(attentionBlock());
    expect(targets.map((t) => `${t.op} ${t.module} ${t.weight}`)).toEqual([
      'MatMul attn1.to_q onnx::MatMul_1',
      'MatMul attn1.to_k onnx::MatMul_2',
      'MatMul attn1.to_v onnx::MatMul_3',
      'MatMul attn1.to_out.0 onnx::MatMul_4',
      'Gemm proj proj.weight',
      'Conv conv conv.weight',
    ]);
  });

  it('adapts the attention projections by default, with PEFT names and shapes, as a no-op at first', async () => {
    const base = attentionBlock();
    const lora = addLora(base, { rank: 2, prefix: 'unet.' });
    expect(lora.adapters.map((a) => a.module)).toEqual([
      'unet.attn1.to_q',
      'unet.attn1.to_k',
      'unet.attn1.to_v',
      'unet.attn1.to_out.0',
    ]);
    expect(lora.parameters[0]).toBe('unet.attn1.to_q.lora_A.weight');
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    expect(inits.get('unet.attn1.to_q.lora_A.weight')!.dims.map(Number)).toEqual([2, 8]);
    expect(inits.get('unet.attn1.to_q.lora_B.weight')!.dims.map(Number)).toEqual([8, 2]);
    const x = randTensor('float32', [2, 5, 8], 1);
    expect(values((await runModel(lora.model, { x }))[graphOf(base).output[0].name])).toEqual(
      values((await runModel(base, { x }))[graphOf(base).output[0].name]),
    );
    expect(() => addLora(base, { rank: 2, targets: /nothing/ })).toThrow(
      /no MatMul\/Gemm\/Conv weight matches/,
    );
    expect(() => addLora(base, { rank: 0 })).toThrow(/positive integer/);
  });

  it('equals the base model with merged weights (MatMul, Gemm, Conv; alpha ≠ rank)', async () => {
    const base = attentionBlock();
    const lora = addLora(base, { rank: 3, alpha: 6, targets: () => true, initB: 'normal', seed: 4 });
    // Make the branch large enough to matter.
    for (const t of graphOf(lora.model).initializer.filter((t) => t.name.endsWith('lora_B.weight'))) {
      setTensorValues(
        t,
        tensorToFloat32(t).map((v) => v * 30),
      );
    }
    const merged = attentionBlock();
    const inits = new Map(graphOf(merged).initializer.map((t) => [t.name, t]));
    for (const a of lora.adapters) setTensorValues(inits.get(a.weight)!, mergedWeight(lora.model, a));
    const x = randTensor('float32', [2, 5, 8], 2);
    const name = graphOf(base).output[0].name;
    const y1 = values((await runModel(lora.model, { x }))[name]);
    const y2 = values((await runModel(merged, { x }))[name]);
    const y0 = values((await runModel(base, { x }))[name]);
    expect(Math.max(...y1.map((v, i) => Math.abs(v - y2[i])))).toBeLessThan(1e-4);
    expect(Math.max(...y1.map((v, i) => Math.abs(v - y0[i])))).toBeGreaterThan(0.1);
  });
});

describe('gradients through LoRA branches', () => {
  it('MatMul and Gemm adapters (float64)', async () => {
    const m = new TinyModel({ opset: 17, dtype: 'float64' });
    const h = m.node('MatMul', [m.input('x', [3, 4]), m.randInit('onnx::MatMul_9', [4, 5], 1)]);
    m.nodes[0].name = '/attn1/to_v/MatMul';
    const y = m.node('Gemm', [h, m.randInit('fc.weight', [2, 5], 2)], { transB: 1 });
    m.nodes[1].name = '/fc/Gemm';
    m.output(y);
    const lora = addLora(m.model(), { rank: 2, targets: () => true, initB: 'normal', alpha: 4 });
    await expectGradients('LoRA MatMul+Gemm', lora.model, {
      wrt: ['x', ...lora.parameters],
      feeds: { x: randTensor('float64', [3, 4], 3) },
    });
  });

  it('Conv adapter (float32)', async () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    m.output(
      m.node('Conv', [m.input('x', [1, 2, 5, 5]), m.randInit('conv_in.weight', [3, 2, 3, 3], 1, 0.3)], {
        pads: [1, 1, 1, 1],
        strides: [2, 2],
      }),
    );
    const lora = addLora(m.model(), { rank: 2, targets: ['conv_in'], initB: 'normal' });
    expect(lora.adapters[0].module).toBe('conv_in');
    await expectGradients('LoRA Conv', lora.model, {
      wrt: lora.parameters,
      feeds: { x: randTensor('float32', [1, 2, 5, 5], 3) },
      type: 'float32',
    });
  });
});

describe('fitting a LoRA', () => {
  it('fits a rank-2 change of to_q/to_v on a tiny attention block: the loss falls by at least 100×', async () => {
    // Teacher: the same block with rank-2 adapters at random values; student: fresh adapters (B = 0).
    const base = attentionBlock();
    const teacher = addLora(base, { rank: 2, targets: /to_(q|v)$/, initB: 'normal', seed: 11 });
    for (const t of graphOf(teacher.model).initializer.filter((t) => t.name.endsWith('lora_B.weight'))) {
      setTensorValues(
        t,
        tensorToFloat32(t).map((v) => v * 40),
      );
    }
    const student = addLora(base, { rank: 2, targets: /to_(q|v)$/, seed: 12 });
    const out = graphOf(base).output[0].name;
    const grad = buildGradient(student.model, {
      loss: mseLoss(out, { input: 'target' }),
      wrt: student.parameters,
      promote: true,
    });
    const session = await createSession(grad.model);
    const teacherSession = await createSession(teacher.model);
    const params: Record<string, Float32Array> = {};
    const inits = new Map(graphOf(student.model).initializer.map((t) => [t.name, t]));
    for (const p of student.parameters) params[p] = tensorToFloat32(inits.get(p)!);
    const dims = Object.fromEntries(student.parameters.map((p) => [p, inits.get(p)!.dims.map(Number)]));
    const opt = new Adam(params, { lr: 0.03 });
    const losses: number[] = [];
    for (let step = 0; step < 400; step++) {
      if (step === 250) opt.lr = 0.01;
      const x = randTensor('float32', [2, 5, 8], 100 + step);
      const target = (await teacherSession.run({ x }))[out];
      const feeds: Record<string, ort.Tensor> = { x, target };
      for (const p of student.parameters) feeds[p] = new ort.Tensor('float32', params[p], dims[p]);
      const r = await session.run(feeds);
      losses.push(values(r[grad.loss])[0]);
      opt.step(
        Object.fromEntries(student.parameters.map((p) => [p, r[grad.gradients[p]].data as Float32Array])),
      );
    }
    await session.release();
    await teacherSession.release();
    const first = losses.slice(0, 5).reduce((a, b) => a + b, 0) / 5;
    const last = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
    console.info(
      `[lora fit] loss ${first.toExponential(2)} → ${last.toExponential(2)} (×${(first / last).toFixed(0)} lower) in 400 Adam steps`,
    );
    expect(first / last).toBeGreaterThan(100);

    // Save the trained adapters and load them into a fresh copy: same outputs.
    const file = join(scratch, 'adapter.safetensors');
    await saveLora(file, student, { values: params });
    const saved = await readSafetensors(file);
    expect([...saved.tensors.keys()].sort()).toEqual([...student.parameters].sort());
    expect(saved.metadata).toMatchObject({ lora_rank: '2', lora_alpha: '2' });
    const fresh = addLora(base, { rank: 2, targets: /to_(q|v)$/, seed: 99 });
    await loadLora(file, fresh);
    const x = randTensor('float32', [2, 5, 8], 7);
    const a = values((await runModel(fresh.model, { x }))[out]);
    const t = values((await runModel(teacher.model, { x }))[out]);
    expect(Math.max(...a.map((v, i) => Math.abs(v - t[i])))).toBeLessThan(0.05);
  });

  it('loadLora checks names and shapes', async () => {
    const base = attentionBlock();
    const lora = addLora(base, { rank: 2 });
    const file = join(scratch, 'r2.safetensors');
    await saveLora(file, lora);
    const other = addLora(base, { rank: 3 });
    await expect(loadLora(file, other)).rejects.toThrow(/has shape \[2, 8\], the model expects \[3, 8\]/);
    const fewer = addLora(base, { rank: 2, targets: /to_q$/ });
    await expect(loadLora(file, fewer)).rejects.toThrow(/no adapter for/);
    await loadLora(file, fewer, { allowExtra: true });
  });
});

describe("A's initialisation", () => {
  /** Sample standard deviation of every A factor of a rank-r LoRA on `model`. */
  const aStd = (model: ModelProto, options: Parameters<typeof addLora>[1]) => {
    const lora = addLora(model, options);
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    return lora.adapters.map((a) => {
      const v = tensorToFloat32(inits.get(a.a)!);
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      return {
        module: a.module,
        std: Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length),
        n: v.length,
      };
    });
  };

  it("defaults to diffusers' LoRALinearLayer: N(0, (1/rank)²), whatever the fan-in (MatMul and Conv)", () => {
    const dim = 64;
    for (const rank of [4, 16]) {
      const stats = aStd(attentionBlock('float32', dim), { rank, targets: () => true });
      expect(stats.length).toBe(6);
      for (const s of stats) {
        // Standard error of a sample std is σ/√(2n): n = rank·fan_in ≥ 192 values here.
        expect(Math.abs(s.std * rank - 1)).toBeLessThan(4 / Math.sqrt(2 * s.n));
      }
    }
  });

  it("'fan-in' draws N(0, 1/fan_in) (EditKit's first init), and a bad name is refused", () => {
    const dim = 64;
    const stats = aStd(attentionBlock('float32', dim), { rank: 16, initA: 'fan-in' });
    for (const s of stats) expect(Math.abs(s.std * Math.sqrt(dim) - 1)).toBeLessThan(4 / Math.sqrt(2 * s.n));
    // the two differ by √fan_in / rank = 0.5 here: a test that could not tell them apart would fail one of these
    expect(loraInitStd('fan-in', 16, dim) / loraInitStd('diffusers', 16, dim)).toBeCloseTo(2, 6);
    expect(() => addLora(attentionBlock(), { rank: 2, initA: 'kaiming' as unknown as LoraInitA })).toThrow(
      /LoRA init must be one of diffusers, fan-in/,
    );
  });
});

describe('LoRA key layouts', () => {
  /** A trained-looking LoRA: random B, alpha ≠ rank, so a reader that dropped the scale would be caught. */
  const trained = (alpha = 4) => {
    const base = attentionBlock();
    const lora = addLora(base, { rank: 2, alpha, prefix: 'unet.', initB: 'normal', seed: 3 });
    for (const t of graphOf(lora.model).initializer.filter((t) => t.name.endsWith('lora_B.weight')))
      setTensorValues(
        t,
        tensorToFloat32(t).map((v) => v * 40),
      );
    return { base, lora };
  };
  const output = async (model: ModelProto) => {
    const x = randTensor('float32', [2, 5, 8], 9);
    return values((await runModel(model, { x }))[graphOf(model).output[0].name]);
  };
  const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));

  it('names factors as PEFT, diffusers and the attention-processor layout do, and back', () => {
    const a = float32ToSafeTensor(new Float32Array(4), [2, 2]);
    const peft = new Map([
      ['unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight', a],
      ['unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight', a],
      ['unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_A.weight', a],
      ['unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight', a],
    ]);
    expect([...fromPeftLayout(peft, 'diffusers').keys()]).toEqual([
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight',
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight',
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.down.weight',
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.up.weight',
    ]);
    const procs = fromPeftLayout(peft, 'attn-procs');
    expect([...procs.keys()]).toEqual([
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight',
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight',
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight',
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight',
    ]);
    for (const layout of LORA_KEY_LAYOUTS) {
      const back = toPeftLayout(fromPeftLayout(peft, layout));
      expect(back.layout).toBe(layout);
      expect([...back.tensors.keys()]).toEqual([...peft.keys()]);
    }
    expect(() => fromPeftLayout(new Map([['unet.conv_in.lora_A.weight', a]]), 'attn-procs')).toThrow(
      /not an attention projection/,
    );
    expect(() => toPeftLayout(new Map([['unet.x.to_q.lora.down.weight', a]]))).toThrow(/has no partner/);
    expect(() =>
      toPeftLayout(
        new Map([
          ['a.to_q.lora.down.weight', a],
          ['a.to_q.lora.up.weight', a],
          ['b.to_k.lora_A.weight', a],
          ['b.to_k.lora_B.weight', a],
        ]),
      ),
    ).toThrow(/mixes LoRA key layouts: diffusers, peft/);
    expect(() => toPeftLayout(new Map([['text_model.embeddings.weight', a]]))).toThrow(/not LoRA factors/);
  });

  it('saves and loads in every layout with the same effect (alpha ≠ rank folded into B for diffusers)', async () => {
    const { base, lora } = trained(4);
    const want = await output(lora.model);
    for (const layout of LORA_KEY_LAYOUTS) {
      const file = join(scratch, `layout-${layout}.safetensors`);
      await saveLora(file, lora, { layout });
      const read = await readSafetensors(file);
      expect(read.metadata.lora_key_layout).toBe(layout);
      // A fresh LoRA of the same shape and the file's own alpha (rank when it says nothing else), filled from it.
      const fresh = addLora(base, { rank: 2, alpha: Number(read.metadata.lora_alpha), prefix: 'unet.' });
      await loadLora(file, fresh);
      expect(maxDiff(await output(fresh.model), want)).toBeLessThan(1e-5);
    }
  });

  it("reads a file with the official DragDiffusion code's key names and per-module alphas", async () => {
    const { base, lora } = trained(2);
    const want = await output(lora.model);
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    // What diffusers' AttnProcsLayers + LoraLoaderMixin.save_lora_weights write (to_out_lora adapts to_out.0),
    // without an alpha: diffusers applies it at scale 1.
    const tensors = new Map<string, ReturnType<typeof float32ToSafeTensor>>();
    for (const a of lora.adapters) {
      const m = /^unet\.(.+)\.(to_q|to_k|to_v|to_out)(\.0)?$/.exec(a.module)!;
      const key = `unet.${m[1]}.processor.${m[2]}_lora`;
      const A = inits.get(a.a)!;
      const B = inits.get(a.b)!;
      tensors.set(`${key}.down.weight`, float32ToSafeTensor(tensorToFloat32(A), A.dims.map(Number)));
      tensors.set(`${key}.up.weight`, float32ToSafeTensor(tensorToFloat32(B), B.dims.map(Number)));
    }
    const file = join(scratch, 'reference-keys.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt' });
    const fresh = addLora(base, { rank: 2, prefix: 'unet.' });
    await loadLora(file, fresh);
    // scale 1 on both sides (trained(2): alpha = rank): the same model
    expect(maxDiff(await output(fresh.model), want)).toBeLessThan(1e-5);

    // The same factors with per-module alphas of 1 (scale ½): the branch is halved.
    for (const a of lora.adapters) {
      const m = /^unet\.(.+)\.(to_q|to_k|to_v|to_out)(\.0)?$/.exec(a.module)!;
      tensors.set(`unet.${m[1]}.processor.${m[2]}_lora.alpha`, float32ToSafeTensor(Float32Array.of(1), []));
    }
    await writeSafetensors(file, tensors, { format: 'pt' });
    const halved = addLora(base, { rank: 2, prefix: 'unet.' });
    await loadLora(file, halved);
    const half = addLora(base, { rank: 2, alpha: 1, prefix: 'unet.' });
    const halfInits = new Map(graphOf(half.model).initializer.map((t) => [t.name, t]));
    for (const name of lora.parameters)
      setTensorValues(halfInits.get(name)!, tensorToFloat32(inits.get(name)!));
    const wantHalf = await output(half.model);
    expect(maxDiff(await output(halved.model), wantHalf)).toBeLessThan(1e-5);
    expect(maxDiff(wantHalf, want)).toBeGreaterThan(1e-2);
  });
});
