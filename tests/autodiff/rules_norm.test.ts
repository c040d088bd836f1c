/**
 * Gradient checks for Softmax/LogSoftmax and the normalizations. LayerNormalization, GroupNormalization,
 * BatchNormalization and Softmax have double kernels (float64); InstanceNormalization only float (float32).
 */
import { describe, it } from 'vitest';
import { expectGradients, makeDynamic, randTensor, TinyModel } from './harness.js';

describe('Softmax / LogSoftmax', () => {
  it.each([
    ['Softmax', 17, -1],
    ['Softmax', 17, 1],
    ['Softmax', 11, 1],
    ['Softmax', 11, 2],
    ['LogSoftmax', 17, -1],
    ['LogSoftmax', 11, 1],
  ])('%s opset %i axis %i', async (op, opset, axis) => {
    const m = new TinyModel({ opset });
    m.output(m.node(op, [m.input('x', [2, 3, 4])], { axis }));
    const feeds = { x: randTensor('float64', [2, 3, 4], 1) };
    await expectGradients(`${op} opset ${opset} axis ${axis}`, m.model(), { wrt: ['x'], feeds });
    // Before opset 13, runtime-shaped broadcast reductions are refused (see the error tests).
    if (opset >= 13)
      await expectGradients(`${op} opset ${opset} axis ${axis} dynamic`, makeDynamic(m.model()), {
        wrt: ['x'],
        feeds,
      });
  });
});

describe('InstanceNormalization (float32)', () => {
  it.each([
    ['4-D', [2, 3, 4, 5]],
    ['3-D (SD GroupNorm form)', [2, 4, 6]],
  ])('%s', async (name, dims) => {
    const m = new TinyModel({ opset: 14, dtype: 'float32' });
    const c = dims[1];
    m.output(
      m.node('InstanceNormalization', [m.input('x', dims), m.input('scale', [c]), m.input('bias', [c])], {
        epsilon: 1e-5,
      }),
    );
    const feeds = {
      x: randTensor('float32', dims, 1),
      scale: randTensor('float32', [c], 2),
      bias: randTensor('float32', [c], 3),
    };
    await expectGradients(`InstanceNorm ${name}`, m.model(), {
      wrt: ['x', 'scale', 'bias'],
      feeds,
      type: 'float32',
      eps: 1e-2,
    });
    await expectGradients(`InstanceNorm ${name} dynamic`, makeDynamic(m.model(), ['x']), {
      wrt: ['x', 'scale', 'bias'],
      feeds,
      type: 'float32',
    });
  });

  it('SD GroupNorm: Reshape → InstanceNormalization → Reshape → Mul → Add (opset 14)', async () => {
    const m = new TinyModel({ opset: 14, dtype: 'float32' });
    const x = m.input('x', [2, 4, 3, 3]);
    const groups = 2;
    const r1 = m.node('Reshape', [x, m.ints('s1', [0, groups, -1])]);
    const inorm = m.node(
      'InstanceNormalization',
      [r1, m.init('ones', [groups], [1, 1]), m.init('zeros', [groups], [0, 0])],
      { epsilon: 1e-5 },
    );
    const r2 = m.node('Reshape', [inorm, m.node('Shape', [x])]);
    const y = m.node('Add', [m.node('Mul', [r2, m.input('gamma', [4, 1, 1])]), m.input('beta', [4, 1, 1])]);
    m.output(y);
    const feeds = {
      x: randTensor('float32', [2, 4, 3, 3], 1),
      gamma: randTensor('float32', [4, 1, 1], 2),
      beta: randTensor('float32', [4, 1, 1], 3),
    };
    await expectGradients('SD GroupNorm', m.model(), { wrt: ['x', 'gamma', 'beta'], feeds, type: 'float32' });
    await expectGradients('SD GroupNorm dynamic', makeDynamic(m.model(), ['x']), {
      wrt: ['x', 'gamma', 'beta'],
      feeds,
      type: 'float32',
    });
  });
});

describe('LayerNormalization (opset 17)', () => {
  it.each([
    ['last axis', -1, [2, 3, 4], [4]],
    ['last two axes', 1, [2, 3, 4], [3, 4]],
    ['scale broadcast', -2, [2, 3, 4], [1, 4]],
  ])('%s', async (name, axis, dims, scaleDims) => {
    const m = new TinyModel({ opset: 17 });
    m.output(
      m.node(
        'LayerNormalization',
        [m.input('x', dims), m.input('scale', scaleDims), m.input('bias', scaleDims)],
        { axis, epsilon: 1e-5 },
      ),
    );
    const feeds = {
      x: randTensor('float64', dims, 1),
      scale: randTensor('float64', scaleDims, 2),
      bias: randTensor('float64', scaleDims, 3),
    };
    await expectGradients(`LayerNorm ${name}`, m.model(), { wrt: ['x', 'scale', 'bias'], feeds });
    await expectGradients(`LayerNorm ${name} dynamic`, makeDynamic(m.model(), ['x']), {
      wrt: ['x', 'scale', 'bias'],
      feeds,
    });
  });

  it('decomposed (opset 14 CLIP/UNet export: ReduceMean, Sub, Pow, Sqrt, Div)', async () => {
    const m = new TinyModel({ opset: 14 });
    const x = m.input('x', [2, 3, 4]);
    const mean = m.node('ReduceMean', [x], { axes: [-1], keepdims: 1 });
    const d = m.node('Sub', [x, mean]);
    const v = m.node('ReduceMean', [m.node('Pow', [d, m.init('two', [], [2])])], { axes: [-1], keepdims: 1 });
    const n = m.node('Div', [d, m.node('Sqrt', [m.node('Add', [v, m.init('eps', [], [1e-5])])])]);
    m.output(m.node('Add', [m.node('Mul', [n, m.input('g', [4])]), m.input('b', [4])]));
    const feeds = {
      x: randTensor('float64', [2, 3, 4], 1),
      g: randTensor('float64', [4], 2),
      b: randTensor('float64', [4], 3),
    };
    await expectGradients('LayerNorm decomposed', m.model(), { wrt: ['x', 'g', 'b'], feeds });
  });
});

describe('GroupNormalization', () => {
  // Opset 21's kernel keeps its statistics in float32 (stash_type), even for double inputs: checked in float32.
  it.each([
    [18, [2], 'float64'],
    [21, [6], 'float32'],
  ] as const)('opset %i (scale shape %j, %s)', async (opset, scaleDims, type) => {
    const m = new TinyModel({ opset, dtype: type });
    m.output(
      m.node(
        'GroupNormalization',
        [m.input('x', [2, 6, 3, 2]), m.input('scale', [...scaleDims]), m.input('bias', [...scaleDims])],
        { num_groups: 2, epsilon: 1e-5 },
      ),
    );
    const feeds = {
      x: randTensor(type, [2, 6, 3, 2], 1),
      scale: randTensor(type, [...scaleDims], 2),
      bias: randTensor(type, [...scaleDims], 3),
    };
    await expectGradients(`GroupNorm opset ${opset}`, m.model(), {
      wrt: ['x', 'scale', 'bias'],
      feeds,
      type,
    });
    await expectGradients(`GroupNorm opset ${opset} dynamic`, makeDynamic(m.model(), ['x']), {
      wrt: ['x', 'scale', 'bias'],
      feeds,
      type,
    });
  });
});

describe('BatchNormalization (inference mode)', () => {
  it('all five inputs', async () => {
    const m = new TinyModel({ opset: 15 });
    const names = ['scale', 'bias', 'mean', 'var'].map((n) => m.input(n, [3]));
    m.output(m.node('BatchNormalization', [m.input('x', [2, 3, 2, 2]), ...names], { epsilon: 1e-3 }));
    const v = randTensor('float64', [3], 5);
    for (let i = 0; i < 3; i++) (v.data as Float64Array)[i] = Math.abs((v.data as Float64Array)[i]) + 0.5;
    const feeds = {
      x: randTensor('float64', [2, 3, 2, 2], 1),
      scale: randTensor('float64', [3], 2),
      bias: randTensor('float64', [3], 3),
      mean: randTensor('float64', [3], 4),
      var: v,
    };
    await expectGradients('BatchNorm', m.model(), { wrt: ['x', 'scale', 'bias', 'mean', 'var'], feeds });
  });
});
