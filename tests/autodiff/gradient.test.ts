/**
 * The gradient driver: fan-out, non-differentiable paths, pruning, intermediate outputs, promotion of
 * initializers, naming, opset forms, input validation and error messages.
 */
import { describe, expect, it } from 'vitest';
import {
  buildGradient,
  buildGradientModel,
  extractSubgraph,
  gradientName,
  mseLoss,
  registerGradientRule,
} from '../../src/autodiff/index.js';
import { onnx, tensorToFloat32, type ModelProto, graphOf } from '../../src/autodiff/onnx_io.js';
import { expectGradients, makeDynamic, opTypes, randTensor, runModel, TinyModel, values } from './harness.js';

function nodesOf(model: ModelProto) {
  return graphOf(model).node;
}

describe('fan-out and accumulation', () => {
  it('sums the gradient of a tensor used by several nodes (and twice by one node)', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const sq = m.node('Mul', [x, x]);
    const sig = m.node('Sigmoid', [x]);
    const mm = m.node('MatMul', [x, m.randInit('w', [3, 3], 1)]);
    m.output(m.node('Sum', [sq, sig, mm]));
    const r = await expectGradients('fan-out', m.model(), {
      wrt: ['x', 'w'],
      feeds: { x: randTensor('float64', [2, 3], 2) },
    });
    expect(opTypes(r.gradientModel).has('Sum')).toBe(true);
  });

  it('accumulates across a residual connection', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const h = m.node('Tanh', [m.node('MatMul', [x, m.randInit('w', [3, 3], 1, 0.5)])]);
    m.output(m.node('Add', [x, m.node('MatMul', [h, m.randInit('v', [3, 3], 2, 0.5)])]));
    await expectGradients('residual', m.model(), {
      wrt: ['x', 'w', 'v'],
      feeds: { x: randTensor('float64', [2, 3], 3) },
    });
  });
});

describe('non-differentiable paths', () => {
  it('stops at Shape/Gather/ConstantOfShape/Cast-to-int without asking for rules', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const zeros = m.node('ConstantOfShape', [m.node('Shape', [x])], {
      value: onnx.TensorProto.create({ dataType: 11, dims: [1], doubleData: [0.5] }),
    });
    const rounded = m.node('Cast', [m.node('Cast', [x], { to: 7 })], { to: 11 });
    const idx = m.node('ArgMax', [x], { axis: 1, keepdims: 0 });
    const picked = m.node('Gather', [m.node('Reshape', [x, m.ints('flat', [-1])]), idx], { axis: 0 });
    const y = m.node('Add', [m.node('Mul', [x, zeros]), rounded]);
    m.output(y, picked);
    await expectGradients('stop paths', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 3], 2) },
    });
  });

  it("a wrt that reaches the loss only through integers is an error, or zeros with onDisconnected: 'zeros'", async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [3]);
    const y = m.node(
      'Cast',
      [m.node('Floor', [m.node('Cast', [m.node('Cast', [x], { to: 7 })], { to: 11 })])],
      { to: 11 },
    );
    m.output(m.node('ReduceSum', [m.node('Add', [y, m.input('z', [3])])], { keepdims: 0 }));
    const model = m.model();
    const loss = graphOf(model).output[0].name;
    expect(() => buildGradientModel(model, { loss, wrt: ['x', 'z'] })).toThrow(
      /'x' does not influence the loss/,
    );
    const g = buildGradient(model, { loss, wrt: ['x', 'z'], onDisconnected: 'zeros' });
    const out = await runModel(g.model, {
      x: randTensor('float64', [3], 1),
      z: randTensor('float64', [3], 2),
    });
    expect(values(out[gradientName('x')])).toEqual([0, 0, 0]);
    expect(values(out[gradientName('z')])).toEqual([1, 1, 1]);
  });
});

describe('errors', () => {
  it('an operator without a rule names the operator and the node', () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Atan', [m.input('x', [2])]));
    const model = m.model();
    graphOf(model).node[0].name = 'encoder/atan_7';
    const out = graphOf(model).output[0].name;
    expect(() => buildGradientModel(model, { loss: mseLoss(out), wrt: ['x'] })).toThrow(
      /no gradient rule for operator 'Atan' \(node 'encoder\/atan_7' \(Atan\)/,
    );
  });

  it('a contrib operator says to use the raw export', () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Relu', [m.input('x', [2])]));
    const model = m.model();
    const node = graphOf(model).node[0];
    node.opType = 'FastGelu';
    node.domain = 'com.microsoft';
    model.opsetImport.push(onnx.OperatorSetIdProto.create({ domain: 'com.microsoft', version: 1 }));
    graphOf(model).output[0] = onnx.ValueInfoProto.create({
      name: node.output[0],
      type: { tensorType: { elemType: 11, shape: { dim: [{ dimValue: 2 }] } } },
    });
    expect(() => buildGradientModel(model, { loss: mseLoss(node.output[0]), wrt: ['x'] })).toThrow(
      /'FastGelu' of domain 'com.microsoft'.*raw export/,
    );
  });

  it('a rule that cannot handle its node says which node', () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Pad', [m.input('x', [2, 3]), m.ints('p', [1, 1, 1, 1])], { mode: 'reflect' }));
    const model = m.model();
    expect(() =>
      buildGradientModel(model, { loss: mseLoss(graphOf(model).output[0].name), wrt: ['x'] }),
    ).toThrow(/gradient of node 'n0_Pad' \(Pad\): Pad mode 'reflect' is not supported/);
  });

  it('validates loss, wrt and outputs', () => {
    const m = new TinyModel({ opset: 17 });
    const y = m.node('Mul', [m.input('x', [2, 3]), m.init('k', [], [2])]);
    const s = m.node('ReduceSum', [y], { keepdims: 0 });
    const i = m.node('Cast', [s], { to: 7 });
    m.output(y, s, i);
    const model = m.model();
    expect(() => buildGradientModel(model, { loss: y, wrt: ['x'] })).toThrow(
      /shape \[2, 3\]; it must be a scalar/,
    );
    expect(() => buildGradientModel(model, { loss: i, wrt: ['x'] })).toThrow(/not a float type/);
    expect(() => buildGradientModel(model, { loss: 'nope', wrt: ['x'] })).toThrow(/'nope' is not a tensor/);
    expect(() => buildGradientModel(model, { loss: s, wrt: ['w'] })).toThrow(/wrt: 'w' is not an input/);
    expect(() => buildGradientModel(model, { loss: s, wrt: ['x'], outputs: ['zz'] })).toThrow(
      /outputs: 'zz'/,
    );
    expect(() => buildGradientModel(model, { loss: s, wrt: ['x', 'x'] })).toThrow(/unique/);
  });

  it('refuses runtime-shaped broadcast reductions before opset 13, naming the fix', () => {
    const m = new TinyModel({ opset: 12 });
    m.output(m.node('Add', [m.input('a', [2, 3]), m.input('b', [3])]));
    const model = makeDynamic(m.model());
    expect(() =>
      buildGradientModel(model, { loss: mseLoss(graphOf(model).output[0].name), wrt: ['b'] }),
    ).toThrow(/needs opset 13\+.*static shapes/);
    // With inputShapes the same model works.
    expect(() =>
      buildGradientModel(model, {
        loss: mseLoss(graphOf(model).output[0].name),
        wrt: ['b'],
        inputShapes: { a: [2, 3], b: [3] },
      }),
    ).not.toThrow();
  });

  it('rejects a gradient name that is already taken', () => {
    const m = new TinyModel({ opset: 17 });
    const y = m.node('Mul', [m.input('x', [2]), m.input('grad_x', [2])]);
    m.output(m.node('ReduceSum', [y], { keepdims: 0 }));
    const model = m.model();
    expect(() => buildGradientModel(model, { loss: graphOf(model).output[0].name, wrt: ['x'] })).toThrow(
      /'grad_x' is already a tensor/,
    );
  });
});

describe('outputs, pruning and naming', () => {
  function twoBranches() {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const hidden = m.node('Tanh', [m.node('MatMul', [x, m.randInit('w', [3, 4], 1)])], undefined, [
      'block_out',
    ]);
    const head = m.node('MatMul', [hidden, m.randInit('v', [4, 2], 2)], undefined, ['head']);
    const other = m.node('Exp', [m.node('MatMul', [x, m.randInit('u', [3, 5], 3)])], undefined, ['other']);
    m.output(head, other);
    return { model: m.model(), hidden, head, other };
  }

  it('outputs the requested intermediate tensors, the loss and grad_<name> in that order', async () => {
    const { model, hidden, head } = twoBranches();
    const r = buildGradient(model, { loss: mseLoss(head), wrt: ['x', 'w'], outputs: [hidden] });
    expect(r.outputs).toEqual([hidden, r.loss, 'grad_x', 'grad_w']);
    expect(graphOf(r.model).output.map((o) => o.name)).toEqual(r.outputs);
    expect(r.gradients).toEqual({ x: 'grad_x', w: 'grad_w' });
    expect(r.inputs).toEqual(['x', `${head}_target`]);
    const x = randTensor('float64', [2, 3], 4);
    const fwd = await runModel(model, { x });
    const out = await runModel(r.model, { x, [`${head}_target`]: randTensor('float64', [2, 2], 5) });
    expect(values(out[hidden])).toEqual(
      values((await runModel(extractSubgraph(model, [hidden]), { x }))[hidden]),
    );
    expect(out[hidden].dims).toEqual([2, 4]);
    expect(fwd.other).toBeDefined();
  });

  it('prunes the forward pass to what the loss and outputs need', () => {
    const { model, head } = twoBranches();
    const g = buildGradientModel(model, { loss: mseLoss(head), wrt: ['x'] });
    expect(opTypes(g).has('Exp')).toBe(false);
    expect(graphOf(g).initializer.some((t) => t.name === 'u')).toBe(false);
    const withOther = buildGradientModel(model, { loss: mseLoss(head), wrt: ['x'], outputs: ['other'] });
    expect(opTypes(withOther).has('Exp')).toBe(true);
  });

  it('extractSubgraph cuts at given outputs and, optionally, inputs', async () => {
    const { model, hidden, head } = twoBranches();
    const upTo = extractSubgraph(model, [hidden]);
    expect(nodesOf(upTo).map((n) => n.opType)).toEqual(['MatMul', 'Tanh']);
    const from = extractSubgraph(model, [head], { inputs: [hidden] });
    expect(graphOf(from).input.map((v) => v.name)).toEqual([hidden]);
    expect(nodesOf(from).map((n) => n.opType)).toEqual(['MatMul']);
    const h = randTensor('float64', [2, 4], 1);
    const out = await runModel(from, { [hidden]: h });
    expect(out[head].dims).toEqual([2, 2]);
  });

  it('gradientName prefixes grad_ to the name as is', () => {
    expect(gradientName('unet.conv_in.weight')).toBe('grad_unet.conv_in.weight');
  });

  it('differentiates with respect to an intermediate tensor', async () => {
    const { model, hidden, head } = twoBranches();
    const r = buildGradient(model, { loss: mseLoss(head), wrt: [hidden, 'x'] });
    const target = randTensor('float64', [2, 2], 5);
    const x = randTensor('float64', [2, 3], 4);
    const out = await runModel(r.model, { x, [`${head}_target`]: target });
    // d loss / d hidden = 2/4 · (head − target) · vᵀ
    const fwd = await runModel(model, { x });
    const v = tensorToFloat32(graphOf(model).initializer.find((t) => t.name === 'v')!);
    const diff = values(fwd[head]).map((a, i) => a - values(target)[i]);
    const expected: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++)
        expected.push((diff[i * 2] * v[j * 2] + diff[i * 2 + 1] * v[j * 2 + 1]) * 0.5);
    values(out[`grad_${hidden}`]).forEach((g, k) => expect(g).toBeCloseTo(expected[k], 6));
  });
});

describe('initializers in wrt', () => {
  function model() {
    const m = new TinyModel({ opset: 17 });
    m.output(
      m.node(
        'ReduceSum',
        [
          m.node('Mul', [
            m.node('MatMul', [m.input('x', [2, 3]), m.randInit('w', [3, 2], 1)]),
            m.init('k', [], [3]),
          ]),
        ],
        { keepdims: 0 },
      ),
    );
    return m.model();
  }
  const x = randTensor('float64', [2, 3], 2);
  // d/dw Σ 3·(x w) = 3 · xᵀ 1
  const expected = (() => {
    const xv = values(x);
    const out: number[] = [];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) out.push(3 * (xv[i] + xv[3 + i]));
    return out;
  })();

  it('stay constants by default (gradient at the stored value)', async () => {
    const mdl = model();
    const g = buildGradient(mdl, { loss: graphOf(mdl).output[0].name, wrt: ['w'] });
    expect(g.inputs).toEqual(['x']);
    const out = await runModel(g.model, { x });
    values(out.grad_w).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 10));
  });

  it('promote: true makes them required inputs without stored values', async () => {
    const mdl = model();
    const g = buildGradient(mdl, { loss: graphOf(mdl).output[0].name, wrt: ['w'], promote: true });
    expect(g.inputs).toEqual(['x', 'w']);
    expect(graphOf(g.model).initializer.some((t) => t.name === 'w')).toBe(false);
    const w = randTensor('float64', [3, 2], 9);
    const out = await runModel(g.model, { x, w });
    values(out.grad_w).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 10));
  });

  it('keepPromotedDefaults keeps the stored value as an overridable default', async () => {
    const mdl = model();
    const g = buildGradient(mdl, {
      loss: graphOf(mdl).output[0].name,
      wrt: ['w'],
      promote: ['w'],
      keepPromotedDefaults: true,
      outputs: [],
    });
    expect(g.inputs).toEqual(['x', 'w']);
    expect(graphOf(g.model).initializer.some((t) => t.name === 'w')).toBe(true);
    const out = await runModel(g.model, { x });
    values(out.grad_w).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 10));
  });

  it('promote must name wrt initializers', () => {
    const mdl = model();
    expect(() =>
      buildGradient(mdl, { loss: graphOf(mdl).output[0].name, wrt: ['w'], promote: ['k'] }),
    ).toThrow(/'k' is not in wrt/);
  });
});

describe('opset-aware emission', () => {
  function reduceAxesForms(model: ModelProto) {
    return nodesOf(model)
      .filter((n) => n.opType === 'ReduceSum' && n.name.startsWith('grad/'))
      .map((n) =>
        n.attribute.some((a) => a.name === 'axes') ? 'attribute' : n.input.length > 1 ? 'input' : 'none',
      );
  }
  it.each([
    [11, 'attribute'],
    [13, 'input'],
  ])('opset %i: ReduceSum axes as %s', (opset, form) => {
    const m = new TinyModel({ opset });
    m.output(m.node('Add', [m.input('a', [2, 3]), m.input('b', [3])]));
    const model = m.model();
    const g = buildGradientModel(model, { loss: mseLoss(graphOf(model).output[0].name), wrt: ['b'] });
    expect(reduceAxesForms(g)).toContain(form);
    expect(g.opsetImport.map((o) => Number(o.version))).toEqual([opset]);
  });

  it('emits only default-domain operators', () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    const x = m.input('x', [1, 2, 4, 4]);
    const c = m.node('Conv', [x, m.randInit('w', [2, 2, 3, 3], 1)], { pads: [1, 1, 1, 1] });
    const r = m.node('Resize', [c, '', m.init('s', [4], [1, 1, 2, 2], 1)], { mode: 'nearest' });
    m.output(m.node('Softmax', [r], { axis: 1 }));
    const model = makeDynamic(m.model());
    const g = buildGradientModel(model, { loss: mseLoss(graphOf(model).output[0].name), wrt: ['x', 'w'] });
    expect(nodesOf(g).every((n) => !n.domain)).toBe(true);
  });
});

describe('float16 models', () => {
  it('builds constants in float16 and the gradient model runs', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3], 10);
    const w = m.init('w', [3, 2], [0.5, -1, 0.25, 2, -0.5, 1], 10);
    const y = m.node('Sigmoid', [m.node('MatMul', [x, w])]);
    m.output(m.node('ReduceMean', [m.node('Mul', [y, y])], { keepdims: 0 }));
    const model = m.model();
    const g = buildGradient(model, { loss: graphOf(model).output[0].name, wrt: ['x', 'w'] });
    const created = graphOf(g.model).initializer.filter(
      (t) => t.name.startsWith('grad/') && t.dataType !== 7,
    );
    expect(created.length).toBeGreaterThan(0);
    expect(created.every((t) => t.dataType === 10)).toBe(true);
    let out;
    try {
      const { toFloat16Array } = await import('../../src/runtime/float16.js');
      const ort = (await import('onnxruntime-node')).default;
      out = await runModel(g.model, {
        x: new ort.Tensor(
          'float16',
          toFloat16Array(Float32Array.from([0.1, 0.2, -0.3, 0.4, 0.5, -0.6])),
          [2, 3],
        ),
      });
    } catch (error) {
      // ONNX Runtime's CPU provider lacks some float16 kernels; the structure check above is what matters here.
      expect(String(error)).toMatch(/implementation|kernel/i);
      return;
    }
    expect(out.grad_w.type).toBe('float16');
    console.info('[float16] gradient model ran on the CPU provider');
  });
});

describe('inputShapes', () => {
  it('fixes input dims so the backward pass needs no runtime shape arithmetic', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Mul', [m.input('a', [2, 3]), m.input('b', [3])]));
    const model = makeDynamic(m.model());
    const loss = mseLoss(graphOf(model).output[0].name);
    const dynamic = buildGradientModel(model, { loss, wrt: ['b'] });
    const fixed = buildGradientModel(model, { loss, wrt: ['b'], inputShapes: { a: [2, 3], b: [3] } });
    expect(opTypes(dynamic).has('NonZero')).toBe(true);
    expect(opTypes(fixed).has('NonZero')).toBe(false);
    expect(opTypes(fixed).has('Shape')).toBe(false);
    const feeds = {
      a: randTensor('float64', [2, 3], 1),
      b: randTensor('float64', [3], 2),
      [`${graphOf(model).output[0].name}_target`]: randTensor('float64', [2, 3], 3),
    };
    const a = await runModel(dynamic, feeds);
    const b = await runModel(fixed, feeds);
    expect(values(a.grad_b)).toEqual(values(b.grad_b));
    expect(() => buildGradientModel(model, { loss, wrt: ['b'], inputShapes: { a: [2, 3, 1] } })).toThrow(
      /rank 2/,
    );
  });
});

describe('registerGradientRule', () => {
  it('adds a rule for a new operator', async () => {
    // Rules are process-global; Asinh is used by no other test in this file.
    registerGradientRule('Asinh', (ctx) => {
      const { b } = ctx;
      const x = ctx.input(0);
      return [b.div(ctx.dyOrZeros(0), b.op('Sqrt', [b.add(b.scalarLike(1, x), b.mul(x, x))]))];
    });
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    m.output(m.node('Asinh', [m.input('x', [4])]));
    await expectGradients('registered Asinh', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float32', [4], 1) },
      type: 'float32',
    });
  });
});
