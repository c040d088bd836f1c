/**
 * Gradient checks for the Reduce* rules (float64) in both opset forms: axes as attributes (ReduceSum before
 * opset 13, the others before 18) and as an input; keepdims 0/1; all axes; GlobalAveragePool (float32).
 */
import { describe, it } from 'vitest';
import { expectGradients, int64Tensor, makeDynamic, randTensor, TinyModel } from './harness.js';

const REDUCES = [
  'ReduceSum',
  'ReduceMean',
  'ReduceSumSquare',
  'ReduceL2',
  'ReduceL1',
  'ReduceMax',
  'ReduceMin',
  'ReduceLogSumExp',
];

function reduceModel(op: string, opset: number, axes: number[] | undefined, keepdims: number) {
  const m = new TinyModel({ opset });
  const x = m.input('x', [2, 3, 4]);
  const inputForm = op === 'ReduceSum' ? opset >= 13 : opset >= 18;
  let y: string;
  if (axes === undefined) y = m.node(op, [x], { keepdims });
  else if (inputForm) y = m.node(op, [x, m.ints('axes', axes)], { keepdims });
  else y = m.node(op, [x], { axes, keepdims });
  m.output(y);
  return m.model();
}

describe.each(REDUCES)('%s', (op) => {
  it.each([
    [13, [1], 1],
    [13, [0, 2], 0],
    [13, [-1], 0],
    [13, undefined, 0],
    [18, [1], 0],
    [18, [-2, 0], 1],
    [18, undefined, 1],
  ])('opset %i axes %j keepdims %i', async (opset, axes, keepdims) => {
    const model = reduceModel(op, opset, axes, keepdims);
    const feeds = { x: randTensor('float64', [2, 3, 4], 7) };
    await expectGradients(`${op} opset ${opset} axes ${JSON.stringify(axes)} keep ${keepdims}`, model, {
      wrt: ['x'],
      feeds,
    });
    await expectGradients(
      `${op} opset ${opset} axes ${JSON.stringify(axes)} keep ${keepdims} dynamic`,
      makeDynamic(model),
      { wrt: ['x'], feeds },
    );
  });

  // Opset 11 (axes as attributes everywhere); static shapes only, as runtime broadcast reductions need 13+.
  it.each([
    [[1], 1],
    [[0, -1], 0],
  ])('opset 11 axes %j keepdims %i', async (axes, keepdims) => {
    await expectGradients(
      `${op} opset 11 axes ${JSON.stringify(axes)} keep ${keepdims}`,
      reduceModel(op, 11, axes, keepdims),
      {
        wrt: ['x'],
        feeds: { x: randTensor('float64', [2, 3, 4], 7) },
      },
    );
  });
});

describe('ReduceSum with runtime axes (opset 13)', () => {
  it('axes from a graph input', async () => {
    const m = new TinyModel({ opset: 13 });
    m.output(m.node('ReduceSum', [m.input('x', [2, 3, 4]), m.input('axes', [1], 7)], { keepdims: 0 }));
    await expectGradients('ReduceSum runtime axes', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 3, 4], 1), axes: int64Tensor([1], [1]) },
    });
  });
});

describe('GlobalAveragePool (float32)', () => {
  it('static and runtime shapes', async () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    m.output(m.node('GlobalAveragePool', [m.input('x', [2, 3, 4, 5])]));
    const feeds = { x: randTensor('float32', [2, 3, 4, 5], 1) };
    await expectGradients('GlobalAveragePool', m.model(), { wrt: ['x'], feeds, type: 'float32' });
    await expectGradients('GlobalAveragePool dynamic', makeDynamic(m.model()), {
      wrt: ['x'],
      feeds,
      type: 'float32',
    });
  });
});
