/**
 * Gradient checks for elementwise rules: binary ops with broadcasting (static and runtime shapes), variadic ops,
 * unary activations. float64 unless the op has only float kernels in ONNX Runtime's CPU provider (Erf,
 * Softplus, Gelu via Erf): those run in float32.
 */
import { describe, it } from 'vitest';
import { expectGradients, makeDynamic, randTensor, TinyModel, type FloatType } from './harness.js';

type Dims = number[];

const BROADCAST_CASES: [string, Dims, Dims][] = [
  ['same shape', [2, 3], [2, 3]],
  ['row vector', [2, 3], [3]],
  ['column', [2, 3], [2, 1]],
  ['scalar', [2, 3], []],
  ['both ways', [2, 1, 4], [3, 1]],
  ['leading 1', [1, 3], [2, 1, 3]],
];

function binary(op: string, a: Dims, b: Dims, opset = 17, type: FloatType = 'float64') {
  const m = new TinyModel({ opset, dtype: type });
  m.output(m.node(op, [m.input('a', a), m.input('b', b)]));
  return m.model();
}

// Inputs positive where the op needs it (Pow's base, Div's denominator away from 0).
function feedsFor(a: Dims, b: Dims, op: string, type: FloatType = 'float64') {
  const shift = (t: ReturnType<typeof randTensor>, by: number) => {
    const data = t.data as Float64Array | Float32Array;
    for (let i = 0; i < data.length; i++) data[i] = Math.abs(data[i]) + by;
    return t;
  };
  let fa = randTensor(type, a, 11);
  let fb = randTensor(type, b, 12);
  if (op === 'Pow') fa = shift(fa, 0.5);
  if (op === 'Div') fb = shift(fb, 0.5);
  if (op === 'Pow') fb = randTensor(type, b, 12, 0.5);
  return { a: fa, b: fb };
}

describe.each(['Add', 'Sub', 'Mul', 'Div', 'Pow'])('%s', (op) => {
  it.each(BROADCAST_CASES)('broadcast: %s (static shapes)', async (name, a, b) => {
    await expectGradients(`${op} ${name}`, binary(op, a, b), { wrt: ['a', 'b'], feeds: feedsFor(a, b, op) });
  });
  it.each(BROADCAST_CASES)('broadcast: %s (runtime shapes)', async (name, a, b) => {
    await expectGradients(`${op} ${name} dynamic`, makeDynamic(binary(op, a, b)), {
      wrt: ['a', 'b'],
      feeds: feedsFor(a, b, op),
    });
  });
});

describe('Pow with a constant exponent', () => {
  it.each([
    ['int64 2', 2, 'int64'],
    ['float 3', 3, 'float'],
    ['float 0.5', 0.5, 'float'],
  ])('x ** %s', async (_name, exponent, kind) => {
    const m = new TinyModel({ opset: 17 });
    const e = kind === 'int64' ? m.ints('e', [exponent], []) : m.init('e', [], [exponent]);
    m.output(m.node('Pow', [m.input('x', [2, 3]), e]));
    const x = randTensor('float64', [2, 3], 5);
    for (let i = 0; i < x.size; i++)
      (x.data as Float64Array)[i] = Math.abs((x.data as Float64Array)[i]) + 0.2;
    await expectGradients(`Pow const ${exponent}`, m.model(), { wrt: ['x'], feeds: { x } });
  });
});

describe('variadic', () => {
  // Mean has only a float kernel.
  it.each([
    ['Sum', 'float64'],
    ['Mean', 'float32'],
    ['Max', 'float64'],
    ['Min', 'float64'],
  ] as const)('%s of three with broadcasting (%s)', async (op, type) => {
    const m = new TinyModel({ opset: 17, dtype: type });
    m.output(m.node(op, [m.input('a', [2, 3]), m.input('b', [3]), m.input('c', [2, 1])]));
    const feeds = {
      a: randTensor(type, [2, 3], 1),
      b: randTensor(type, [3], 2),
      c: randTensor(type, [2, 1], 3),
    };
    await expectGradients(`${op} variadic`, m.model(), { wrt: ['a', 'b', 'c'], feeds, type });
  });
});

const UNARY: [string, FloatType, Record<string, number | string> | undefined, number][] = [
  // [op, type, attrs, input shift (keeps Log/Sqrt inputs positive and Relu/Abs away from the kink)]
  ['Neg', 'float64', undefined, 0],
  ['Identity', 'float64', undefined, 0],
  ['Exp', 'float64', undefined, 0],
  ['Log', 'float64', undefined, 0.3],
  ['Sqrt', 'float64', undefined, 0.3],
  ['Reciprocal', 'float64', undefined, 0.5],
  ['Sigmoid', 'float64', undefined, 0],
  ['Tanh', 'float64', undefined, 0],
  ['Relu', 'float64', undefined, 0],
  ['LeakyRelu', 'float64', { alpha: 0.1 }, 0],
  ['Abs', 'float64', undefined, 0],
  ['Sin', 'float64', undefined, 0],
  ['Cos', 'float64', undefined, 0],
  ['Erf', 'float32', undefined, 0],
  ['Softplus', 'float32', undefined, 0],
];

describe('unary', () => {
  it.each(UNARY)('%s (%s)', async (op, type, attrs, shift) => {
    const m = new TinyModel({ opset: 17, dtype: type });
    m.output(m.node(op, [m.input('x', [3, 4])], attrs));
    const x = randTensor(type, [3, 4], 21);
    const data = x.data as Float64Array | Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (shift > 0) data[i] = Math.abs(data[i]) + shift;
      // Keep piecewise-linear ops away from the kink at 0, where finite differences straddle it.
      else if (Math.abs(data[i]) < 0.05) data[i] += 0.1;
    }
    await expectGradients(op, m.model(), { wrt: ['x'], feeds: { x }, type });
  });

  it.each(['none', 'tanh'])('Gelu approximate=%s (opset 20, float32)', async (approximate) => {
    const m = new TinyModel({ opset: 20, dtype: 'float32' });
    m.output(m.node('Gelu', [m.input('x', [3, 4])], { approximate }));
    await expectGradients(`Gelu ${approximate}`, m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float32', [3, 4], 4) },
      type: 'float32',
    });
  });

  // Clip has a double kernel from opset 13 on; the attribute form (opset < 11) is checked in float32.
  it.each([
    [13, 'inputs', 'float64'],
    [10, 'attributes', 'float32'],
  ] as const)('Clip (opset %i, bounds as %s, %s)', async (opset, _form, type) => {
    const m = new TinyModel({ opset, dtype: type });
    const x = m.input('x', [4, 5]);
    const y =
      opset >= 11
        ? m.node('Clip', [x, m.init('lo', [], [-0.5]), m.init('hi', [], [0.7])])
        : m.node('Clip', [x], { min: -0.5, max: 0.7 });
    m.output(y);
    const feed = randTensor(type, [4, 5], 8);
    const data = feed.data as Float64Array;
    for (let i = 0; i < data.length; i++)
      if (Math.abs(data[i] + 0.5) < 0.03 || Math.abs(data[i] - 0.7) < 0.03) data[i] += 0.1;
    await expectGradients(`Clip opset ${opset}`, m.model(), {
      wrt: ['x'],
      feeds: { x: feed },
      type,
      eps: type === 'float32' ? 1e-2 : undefined,
    });
  });

  it('Cast float64 → float32 → float64 (float32 step)', async () => {
    const m = new TinyModel({ opset: 17 });
    const y = m.node(
      'Cast',
      [m.node('Mul', [m.node('Cast', [m.input('x', [3])], { to: 1 }), m.init('k', [3], [1, 2, 3], 1)])],
      { to: 11 },
    );
    m.output(y);
    await expectGradients('Cast', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [3], 2) },
      eps: 1e-3,
      tol: 1e-4,
    });
  });

  it('Dropout in inference mode is the identity', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Dropout', [m.input('x', [2, 3])], undefined, ['y', 'mask']));
    await expectGradients('Dropout', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 3], 2) },
      outputs: ['y'],
    });
  });
});

describe('selection', () => {
  it('Where with broadcasting of all three inputs', async () => {
    const m = new TinyModel({ opset: 17 });
    const cond = m.node('Greater', [m.input('c', [2, 1, 4]), m.init('zero', [], [0])]);
    m.output(m.node('Where', [cond, m.input('a', [3, 4]), m.input('b', [2, 1, 1])]));
    const feeds = {
      c: randTensor('float64', [2, 1, 4], 1),
      a: randTensor('float64', [3, 4], 2),
      b: randTensor('float64', [2, 1, 1], 3),
    };
    await expectGradients('Where', m.model(), { wrt: ['a', 'b'], feeds });
    await expectGradients('Where dynamic', makeDynamic(m.model()), { wrt: ['a', 'b'], feeds });
  });

  it('PRelu with a per-channel slope', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('PRelu', [m.input('x', [2, 3, 4]), m.input('slope', [3, 1])]));
    const x = randTensor('float64', [2, 3, 4], 1);
    await expectGradients('PRelu', m.model(), {
      wrt: ['x', 'slope'],
      feeds: { x, slope: randTensor('float64', [3, 1], 2, 0.3) },
    });
  });
});
