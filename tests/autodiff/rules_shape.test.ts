/**
 * Gradient checks for data-movement rules (float64 unless noted): Reshape, Flatten, Squeeze, Unsqueeze,
 * Transpose, Expand, Tile, Concat, Split, Slice, Gather, Pad; Resize/Upsample in float32 (no double kernel).
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildGradientModel, graphOf, mseLoss } from '../../src/autodiff/index.js';
import { expectGradients, int64Tensor, makeDynamic, opTypes, randTensor, TinyModel } from './harness.js';

describe('reshaping', () => {
  it('Reshape with a constant shape and with a Shape-computed one', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3, 4]);
    const a = m.node('Reshape', [x, m.ints('s', [0, -1])]);
    // Shape → Gather → Concat → Reshape, the integer path exports use (not differentiated).
    const shape = m.node('Shape', [x]);
    const batch = m.node('Gather', [shape, m.ints('zero', [0])], { axis: 0 });
    const target = m.node('Concat', [batch, m.ints('rest', [4, 3])], { axis: 0 });
    const b = m.node('Reshape', [x, target]);
    m.output(m.node('Add', [m.node('Reshape', [a, m.ints('s2', [2, 4, 3])]), b]));
    const feeds = { x: randTensor('float64', [2, 3, 4], 1) };
    await expectGradients('Reshape', m.model(), { wrt: ['x'], feeds });
    await expectGradients('Reshape dynamic', makeDynamic(m.model()), { wrt: ['x'], feeds });
  });

  it.each([13, 11])('Flatten, Squeeze, Unsqueeze (opset %i)', async (opset) => {
    const m = new TinyModel({ opset });
    const x = m.input('x', [2, 1, 3]);
    const sq =
      opset >= 13 ? m.node('Squeeze', [x, m.ints('ax', [1])]) : m.node('Squeeze', [x], { axes: [1] });
    const un =
      opset >= 13
        ? m.node('Unsqueeze', [sq, m.ints('ax2', [0, -1])])
        : m.node('Unsqueeze', [sq], { axes: [0, 3] });
    m.output(m.node('Flatten', [un], { axis: 2 }));
    await expectGradients(`Squeeze/Unsqueeze/Flatten opset ${opset}`, m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 1, 3], 1) },
    });
  });

  it.each([[[2, 0, 1]], [undefined]])('Transpose perm %j', async (perm) => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Transpose', [m.input('x', [2, 3, 4])], perm ? { perm } : undefined));
    await expectGradients('Transpose', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 3, 4], 1) },
    });
  });
});

describe('broadcasting and tiling', () => {
  it.each([
    ['new leading axes', [3, 1], [2, 3, 4]],
    ['shape smaller than input', [2, 3], [1, 3]],
  ])('Expand: %s', async (_name, from, to) => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Expand', [m.input('x', from), m.ints('shape', to)]));
    const feeds = { x: randTensor('float64', from, 1) };
    await expectGradients(`Expand ${_name}`, m.model(), { wrt: ['x'], feeds });
    await expectGradients(`Expand ${_name} dynamic`, makeDynamic(m.model()), { wrt: ['x'], feeds });
  });

  it('Tile with constant and runtime repeats', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const a = m.node('Tile', [x, m.ints('r', [2, 1])]);
    const b = m.node('Tile', [x, m.input('reps', [2], 7)]);
    m.output(a, b);
    const feeds = { x: randTensor('float64', [2, 3], 1), reps: int64Tensor([2], [1, 3]) };
    await expectGradients('Tile', m.model(), { wrt: ['x'], feeds });
  });
});

describe('Concat / Split', () => {
  it('Concat along channels (the UNet skip connection), static and runtime sizes', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(
      m.node('Concat', [m.input('a', [2, 3, 2]), m.input('b', [2, 1, 2]), m.input('c', [2, 2, 2])], {
        axis: 1,
      }),
    );
    const feeds = {
      a: randTensor('float64', [2, 3, 2], 1),
      b: randTensor('float64', [2, 1, 2], 2),
      c: randTensor('float64', [2, 2, 2], 3),
    };
    const r = await expectGradients('Concat', m.model(), { wrt: ['a', 'b', 'c'], feeds });
    expect(opTypes(r.gradientModel).has('Split')).toBe(true);
    const d = await expectGradients('Concat dynamic', makeDynamic(m.model()), {
      wrt: ['a', 'b', 'c'],
      feeds,
    });
    expect(opTypes(d.gradientModel).has('Slice')).toBe(true);
  });

  it('Concat with a constant (only some inputs differentiable)', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Concat', [m.init('cls', [1, 2], [0.5, -0.5]), m.input('x', [3, 2])], { axis: 0 }));
    await expectGradients('Concat const', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [3, 2], 1) },
    });
  });

  it.each([11, 13, 18])('Split (opset %i), one output unused', async (opset) => {
    const m = new TinyModel({ opset });
    const x = m.input('x', [2, 6]);
    let outs: string;
    if (opset >= 18) outs = m.node('Split', [x], { axis: 1, num_outputs: 3 }, ['p', 'q', 'r']);
    else if (opset >= 13)
      outs = m.node('Split', [x, m.ints('sizes', [1, 2, 3])], { axis: 1 }, ['p', 'q', 'r']);
    else outs = m.node('Split', [x], { axis: 1, split: [1, 2, 3] }, ['p', 'q', 'r']);
    void outs;
    m.output('p', 'r');
    await expectGradients(`Split opset ${opset}`, m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 6], 1) },
    });
  });
});

describe('Slice', () => {
  it.each([
    ['simple', [0], [2], [1], undefined],
    ['negative start, huge end', [-2], [2 ** 63], [2], undefined],
    ['two axes', [1, 0], [3, 2], [2, 0], undefined],
    ['step 2', [0], [5], [2], [2]],
    ['negative step', [-1], [-6], [2], [-1]],
    ['empty', [2], [1], [1], undefined],
  ])('%s', async (name, starts, ends, axes, steps) => {
    const m = new TinyModel({ opset: 17 });
    const inputs = [m.input('x', [3, 4, 5]), m.ints('st', starts), m.ints('en', ends), m.ints('ax', axes)];
    if (steps) inputs.push(m.ints('sp', steps));
    const y = m.node('Slice', inputs);
    m.output(m.node('Mul', [y, m.init('k', [], [1.5])]));
    const feeds = { x: randTensor('float64', [3, 4, 5], 1) };
    await expectGradients(`Slice ${name}`, m.model(), { wrt: ['x'], feeds });
    if (!steps) await expectGradients(`Slice ${name} dynamic`, makeDynamic(m.model()), { wrt: ['x'], feeds });
  });

  it('runtime bounds: GEGLU chunk (Shape → Gather → Div → Slice)', async () => {
    const m = new TinyModel({ opset: 14 });
    const x = m.input('x', [2, 3, 8]);
    const last = m.node('Gather', [m.node('Shape', [x]), m.ints('minus1', [-1])], { axis: 0 });
    const half = m.node('Div', [last, m.ints('two', [2])]);
    const a = m.node('Slice', [x, m.ints('zero', [0]), half, m.ints('ax', [-1])]);
    const b = m.node('Slice', [x, half, m.ints('big', [2 ** 63]), m.ints('ax2', [-1])]);
    m.output(m.node('Mul', [a, m.node('Sigmoid', [b])]));
    const feeds = { x: randTensor('float64', [2, 3, 8], 1) };
    const r = await expectGradients('Slice GEGLU', m.model(), { wrt: ['x'], feeds });
    expect(opTypes(r.gradientModel).has('ScatterElements')).toBe(false);
    const d = await expectGradients('Slice GEGLU dynamic', makeDynamic(m.model()), { wrt: ['x'], feeds });
    expect(opTypes(d.gradientModel).has('ScatterElements')).toBe(true);
  });

  it('runtime bounds from graph inputs (int32 starts, negative and out-of-range values)', async () => {
    const m = new TinyModel({ opset: 13 });
    m.output(
      m.node('Slice', [
        m.input('x', [4, 6]),
        m.input('st', [2], 6),
        m.input('en', [2], 6),
        m.init('ax', [2], [0, 1], 6),
      ]),
    );
    const int32 = (v: number[]) => new ort.Tensor('int32', Int32Array.from(v), [2]);
    const feeds = { x: randTensor('float64', [4, 6], 1), st: int32([-3, 1]), en: int32([100, -1]) };
    await expectGradients('Slice runtime bounds', m.model(), { wrt: ['x'], feeds });
  });

  it('opset 9 (bounds as attributes)', async () => {
    const m = new TinyModel({ opset: 9 });
    m.output(m.node('Slice', [m.input('x', [3, 4])], { starts: [1, -3], ends: [3, 100], axes: [0, 1] }));
    await expectGradients('Slice opset 9', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [3, 4], 1) },
    });
  });
});

describe('Gather', () => {
  it('embedding lookup with repeated and negative indices', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Gather', [m.input('table', [5, 3]), m.input('ids', [2, 3], 7)], { axis: 0 }));
    const feeds = { table: randTensor('float64', [5, 3], 1), ids: int64Tensor([2, 3], [1, 4, 1, 0, -1, 1]) };
    await expectGradients('Gather embedding', m.model(), { wrt: ['table'], feeds });
    await expectGradients('Gather embedding dynamic', makeDynamic(m.model()), { wrt: ['table'], feeds });
  });

  it('a scalar index on axis 1 (CLIP pooled output), int32 indices on axis 2', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 4, 3]);
    const pooled = m.node('Gather', [x, m.ints('zero', [0], [])], { axis: 1 });
    const picked = m.node('Gather', [x, m.init('idx', [2], [2, 0], 6)], { axis: 2 });
    m.output(pooled, picked);
    const feeds = { x: randTensor('float64', [2, 4, 3], 1) };
    await expectGradients('Gather axis 1/2', m.model(), { wrt: ['x'], feeds });
    await expectGradients('Gather axis 1/2 dynamic', makeDynamic(m.model()), { wrt: ['x'], feeds });
  });
});

describe('GatherElements', () => {
  it.each([13, 16])('repeated indices along axis 1, fewer positions than data (opset %i)', async (opset) => {
    const m = new TinyModel({ opset });
    m.output(m.node('GatherElements', [m.input('x', [2, 4, 3]), m.input('idx', [2, 3, 2], 7)], { axis: 1 }));
    const feeds = {
      x: randTensor('float64', [2, 4, 3], 1),
      idx: int64Tensor([2, 3, 2], [0, 3, 3, -1, 1, 1, 2, 2, 0, 0, 3, 1]),
    };
    await expectGradients(`GatherElements opset ${opset}`, m.model(), { wrt: ['x'], feeds });
    await expectGradients(`GatherElements opset ${opset} dynamic`, makeDynamic(m.model()), {
      wrt: ['x'],
      feeds,
    });
  });
});

describe('Pad', () => {
  it.each([
    ['constant pads', 17],
    ['opset 10 attributes', 10],
  ])('%s', async (_name, opset) => {
    const m = new TinyModel({ opset });
    const x = m.input('x', [2, 3, 4]);
    const pads = [0, 1, 2, 0, 2, 1];
    m.output(opset >= 11 ? m.node('Pad', [x, m.ints('pads', pads)]) : m.node('Pad', [x], { pads }));
    const feeds = { x: randTensor('float64', [2, 3, 4], 1) };
    await expectGradients(`Pad ${_name}`, m.model(), { wrt: ['x'], feeds });
    if (opset >= 13)
      await expectGradients(`Pad ${_name} dynamic`, makeDynamic(m.model()), { wrt: ['x'], feeds });
  });

  it('runtime pads', async () => {
    const m = new TinyModel({ opset: 17 });
    m.output(m.node('Pad', [m.input('x', [2, 3]), m.input('pads', [4], 7)]));
    await expectGradients('Pad runtime', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float64', [2, 3], 1), pads: int64Tensor([4], [1, 0, 2, 3]) },
    });
  });
});

describe('Resize (float32)', () => {
  type ResizeCase = {
    name: string;
    x: number[];
    attrs: Record<string, string | number>;
    scales?: number[];
    sizes?: number[];
    opset?: number;
    dynamicOk?: boolean;
  };
  const CASES: ResizeCase[] = [
    {
      name: 'nearest x2 asymmetric/floor (torch export)',
      x: [1, 2, 3, 4],
      attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
      scales: [1, 1, 2, 2],
      dynamicOk: true,
    },
    {
      name: 'nearest x2 defaults (half_pixel, round_prefer_floor)',
      x: [1, 2, 3, 4],
      attrs: { mode: 'nearest' },
      scales: [1, 1, 2, 2],
      dynamicOk: true,
    },
    {
      name: 'nearest x3 by sizes',
      x: [1, 1, 2, 3],
      attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
      sizes: [1, 1, 6, 9],
    },
    { name: 'nearest x1.5 (matrix)', x: [1, 2, 4, 4], attrs: { mode: 'nearest' }, scales: [1, 1, 1.5, 1.5] },
    { name: 'nearest downsample /2', x: [1, 2, 4, 6], attrs: { mode: 'nearest' }, scales: [1, 1, 0.5, 0.5] },
    { name: 'bilinear x2 half_pixel', x: [1, 2, 3, 4], attrs: { mode: 'linear' }, scales: [1, 1, 2, 2] },
    {
      name: 'bilinear align_corners by sizes',
      x: [2, 1, 3, 4],
      attrs: { mode: 'linear', coordinate_transformation_mode: 'align_corners' },
      sizes: [2, 1, 5, 7],
    },
    {
      name: 'bilinear pytorch_half_pixel downsample (CLIP preprocessing)',
      x: [1, 3, 8, 6],
      attrs: { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' },
      sizes: [1, 3, 5, 4],
    },
    {
      name: 'linear asymmetric on axis 1',
      x: [2, 3, 4],
      attrs: { mode: 'linear', coordinate_transformation_mode: 'asymmetric' },
      scales: [1, 2, 1],
    },
    {
      name: 'Resize-10 nearest',
      x: [1, 1, 3, 3],
      attrs: { mode: 'nearest' },
      scales: [1, 1, 2, 2],
      opset: 10,
    },
  ];
  it.each(CASES)('$name', async ({ name, x, attrs, scales, sizes, opset = 17, dynamicOk }) => {
    const m = new TinyModel({ opset, dtype: 'float32' });
    const input = m.input('x', x);
    let y: string;
    if (opset < 11) y = m.node('Resize', [input, m.init('scales', [scales!.length], scales!, 1)], attrs);
    else if (sizes) y = m.node('Resize', [input, '', '', m.ints('sizes', sizes)], attrs);
    else y = m.node('Resize', [input, '', m.init('scales', [scales!.length], scales!, 1)], attrs);
    m.output(y);
    const feeds = { x: randTensor('float32', x, 1) };
    await expectGradients(`Resize ${name}`, m.model(), { wrt: ['x'], feeds, type: 'float32' });
    if (dynamicOk) {
      const d = await expectGradients(`Resize ${name} dynamic`, makeDynamic(m.model()), {
        wrt: ['x'],
        feeds,
        type: 'float32',
      });
      expect(opTypes(d.gradientModel).has('MatMul')).toBe(false);
    }
  });

  it('nearest x2 with runtime sizes (Concat(Shape[:2], 2·Shape[2:]))', async () => {
    const m = new TinyModel({ opset: 17, dtype: 'float32' });
    const x = m.input('x', [1, 2, 3, 4]);
    const shape = m.node('Shape', [x]);
    const head = m.node('Slice', [shape, m.ints('s0', [0]), m.ints('s2', [2])]);
    const tail = m.node('Mul', [
      m.node('Slice', [shape, m.ints('from2', [2]), m.ints('to4', [4])]),
      m.ints('two', [2]),
    ]);
    const sizes = m.node('Concat', [head, tail], { axis: 0 });
    m.output(
      m.node('Resize', [x, '', '', sizes], {
        mode: 'nearest',
        coordinate_transformation_mode: 'asymmetric',
        nearest_mode: 'floor',
      }),
    );
    const feeds = { x: randTensor('float32', [1, 2, 3, 4], 1) };
    await expectGradients('Resize runtime sizes dynamic', makeDynamic(m.model()), {
      wrt: ['x'],
      feeds,
      type: 'float32',
    });
    const linear = m.model();
    graphOf(linear).node[graphOf(linear).node.length - 1].attribute[0].s = new TextEncoder().encode('linear');
    expect(() =>
      buildGradientModel(makeDynamic(linear), { loss: mseLoss(graphOf(linear).output[0].name), wrt: ['x'] }),
    ).toThrow(/runtime sizes is supported only for nearest/);
  });

  it('Upsample (opset 9) nearest x2', async () => {
    const m = new TinyModel({ opset: 9, dtype: 'float32' });
    m.output(
      m.node('Upsample', [m.input('x', [1, 2, 3, 3]), m.init('scales', [4], [1, 1, 2, 2], 1)], {
        mode: 'nearest',
      }),
    );
    await expectGradients('Upsample', m.model(), {
      wrt: ['x'],
      feeds: { x: randTensor('float32', [1, 2, 3, 3], 1) },
      type: 'float32',
    });
  });
});
