/**
 * Gradient checks for MatMul, Gemm, Einsum (float64) and Conv, ConvTranspose (float32: ONNX Runtime's CPU
 * provider has no double convolution kernels).
 */
import { describe, it } from 'vitest';
import { expectGradients, makeDynamic, randTensor, TinyModel } from './harness.js';

describe('MatMul', () => {
  it.each([
    ['2-D', [3, 4], [4, 5]],
    ['batched', [2, 3, 4], [2, 4, 5]],
    ['batch broadcast (weights shared)', [2, 3, 4], [4, 5]],
    ['batch broadcast both ways', [2, 1, 3, 4], [5, 4, 2]],
    ['1-D left', [4], [2, 4, 5]],
    ['1-D right', [2, 3, 4], [4]],
    ['1-D both', [4], [4]],
  ])('%s', async (name, a, b) => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('MatMul', [m.input('a', a), m.input('b', b)]));
    const feeds = { a: randTensor('float64', a, 1), b: randTensor('float64', b, 2) };
    await expectGradients(`MatMul ${name}`, m.model(), { wrt: ['a', 'b'], feeds });
    await expectGradients(`MatMul ${name} dynamic`, makeDynamic(m.model()), { wrt: ['a', 'b'], feeds });
  });

  it('at opset 11 (Unsqueeze axes as attributes)', async () => {
    const m = new TinyModel({ opset: 11 });
    m.output(m.node('MatMul', [m.input('a', [4]), m.input('b', [2, 4, 3])]));
    await expectGradients('MatMul opset 11', m.model(), {
      wrt: ['a', 'b'],
      feeds: { a: randTensor('float64', [4], 1), b: randTensor('float64', [2, 4, 3], 2) },
    });
  });
});

describe('Gemm', () => {
  it.each([
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ])('transA=%i transB=%i, alpha, beta, broadcast C', async (transA, transB) => {
    const m = new TinyModel({ opset: 17 });
    const a = transA ? [4, 3] : [3, 4];
    const b = transB ? [5, 4] : [4, 5];
    m.output(
      m.node('Gemm', [m.input('a', a), m.input('b', b), m.input('c', [5])], {
        transA,
        transB,
        alpha: 0.7,
        beta: 1.3,
      }),
    );
    const feeds = {
      a: randTensor('float64', a, 1),
      b: randTensor('float64', b, 2),
      c: randTensor('float64', [5], 3),
    };
    await expectGradients(`Gemm ${transA}${transB}`, m.model(), { wrt: ['a', 'b', 'c'], feeds });
  });

  it('without C, opset 9 (MatMul form)', async () => {
    const m = new TinyModel({ opset: 9 });
    m.output(
      m.node('Gemm', [m.input('a', [3, 4]), m.input('b', [5, 4]), m.init('c', [1], [0.5])], {
        transB: 1,
        alpha: 2.0,
      }),
    );
    const feeds = { a: randTensor('float64', [3, 4], 1), b: randTensor('float64', [5, 4], 2) };
    await expectGradients('Gemm opset 9', m.model(), { wrt: ['a', 'b', 'c'], feeds });
  });
});

describe('Einsum (old attention exports)', () => {
  it.each([
    ['scores', 'bid,bjd->bij', [2, 3, 4], [2, 5, 4]],
    ['weighted values', 'bij,bjd->bid', [2, 3, 5], [2, 5, 4]],
    ['multi-head scores', 'bhid,bhjd->bhij', [1, 2, 3, 4], [1, 2, 5, 4]],
    ['with spaces', 'b i d, b j d -> b i j', [2, 3, 4], [2, 5, 4]],
    ['implicit output', 'ij,jk', [3, 4], [4, 5]],
    ['ellipsis broadcast', '...ij,...jk->...ik', [2, 3, 4], [1, 4, 5]],
    ['summed-only index', 'ij,jk->k', [3, 4], [4, 5]],
  ])('%s: %s', async (name, equation, a, b) => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Einsum', [m.input('a', a as number[]), m.input('b', b as number[])], { equation }));
    const feeds = { a: randTensor('float64', a as number[], 1), b: randTensor('float64', b as number[], 2) };
    await expectGradients(`Einsum ${name}`, m.model(), { wrt: ['a', 'b'], feeds });
  });

  it('single operand transpose + sum', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Einsum', [m.input('a', [2, 3, 4])], { equation: 'ijk->kj' }));
    await expectGradients('Einsum unary', m.model(), {
      wrt: ['a'],
      feeds: { a: randTensor('float64', [2, 3, 4], 1) },
    });
  });
});

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  attrs: Record<string, number | number[] | string>;
  bias?: boolean;
}

const CONV_CASES: ConvCase[] = [
  { name: '3x3 pad 1', x: [2, 3, 6, 6], w: [4, 3, 3, 3], attrs: { pads: [1, 1, 1, 1] }, bias: true },
  {
    name: 'stride 2 (odd size: rows dropped)',
    x: [1, 2, 7, 6],
    w: [3, 2, 3, 3],
    attrs: { strides: [2, 2], pads: [1, 1, 1, 1] },
  },
  { name: 'stride 2, last row in no window', x: [1, 2, 8, 8], w: [2, 2, 3, 3], attrs: { strides: [2, 2] } },
  {
    name: 'SD downsampler (k3 s2 p1, even size)',
    x: [1, 2, 8, 8],
    w: [2, 2, 3, 3],
    attrs: { strides: [2, 2], pads: [1, 1, 1, 1] },
  },
  {
    name: 'dilation 2, asymmetric pads',
    x: [1, 2, 7, 7],
    w: [2, 2, 3, 2],
    attrs: { dilations: [2, 1], pads: [0, 1, 2, 0] },
  },
  { name: 'groups 2', x: [2, 4, 5, 5], w: [6, 2, 3, 3], attrs: { group: 2, pads: [1, 1, 1, 1] }, bias: true },
  { name: 'depthwise, stride 2', x: [1, 3, 6, 6], w: [3, 1, 3, 3], attrs: { group: 3, strides: [2, 2] } },
  { name: '1x1', x: [2, 3, 4, 4], w: [5, 3, 1, 1], attrs: {}, bias: true },
  { name: '1-D', x: [2, 2, 9], w: [3, 2, 4], attrs: { strides: [2], pads: [1, 2] } },
  {
    name: 'auto_pad SAME_UPPER',
    x: [1, 2, 5, 5],
    w: [2, 2, 3, 3],
    attrs: { auto_pad: 'SAME_UPPER', strides: [2, 2] },
  },
];

describe('Conv (float32)', () => {
  it.each(CONV_CASES)('$name', async ({ name, x, w, attrs, bias }) => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    const inputs = [m.input('x', x), m.input('w', w)];
    if (bias) inputs.push(m.input('bias', [w[0]]));
    m.output(m.node('Conv', inputs, attrs));
    const feeds: Record<string, ReturnType<typeof randTensor>> = {
      x: randTensor('float32', x, 1),
      w: randTensor('float32', w, 2, 0.5),
    };
    if (bias) feeds.bias = randTensor('float32', [w[0]], 3);
    const wrt = bias ? ['x', 'w', 'bias'] : ['x', 'w'];
    await expectGradients(`Conv ${name}`, m.model(), { wrt, feeds, type: 'float32' });
    if (attrs.auto_pad === undefined) {
      await expectGradients(`Conv ${name} dynamic`, makeDynamic(m.model(), ['x']), {
        wrt,
        feeds,
        type: 'float32',
      });
    }
  });
});

describe('ConvTranspose (float32)', () => {
  it.each([
    { name: 'stride 2', x: [1, 3, 4, 4], w: [3, 2, 3, 3], attrs: { strides: [2, 2], pads: [1, 1, 1, 1] } },
    {
      name: 'stride 2, output_padding',
      x: [2, 2, 3, 3],
      w: [2, 3, 3, 3],
      attrs: { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] },
    },
    { name: 'dilation', x: [1, 2, 4, 4], w: [2, 2, 2, 2], attrs: { dilations: [2, 2] } },
  ])('$name', async ({ name, x, w, attrs }) => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    m.output(m.node('ConvTranspose', [m.input('x', x), m.input('w', w), m.input('bias', [w[1]])], attrs));
    const feeds = {
      x: randTensor('float32', x, 1),
      w: randTensor('float32', w, 2, 0.5),
      bias: randTensor('float32', [w[1]], 3),
    };
    await expectGradients(`ConvTranspose ${name}`, m.model(), {
      wrt: ['x', 'w', 'bias'],
      feeds,
      type: 'float32',
    });
  });
});
