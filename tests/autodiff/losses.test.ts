/**
 * Loss helpers: values against direct computation, gradients against finite differences (float64), and
 * attaching a separately built loss subgraph.
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  attachLoss,
  buildGradient,
  combineLosses,
  cosineDistanceLoss,
  customLoss,
  l1Loss,
  meanLoss,
  mseLoss,
  sumLoss,
  type LossSpec,
} from '../../src/autodiff/index.js';
import { randTensor, runModel, TinyModel, values } from './harness.js';
import { graphOf } from '../../src/autodiff/onnx_io.js';

/** y = x · k (elementwise), so the loss input is a simple function of x. */
function base() {
  const m = new TinyModel({ opset: 17 });
  m.output(m.node('Mul', [m.input('x', [2, 3]), m.init('k', [3], [1, -2, 0.5])], undefined, ['y']));
  return m.model();
}
const K = [1, -2, 0.5];

async function evaluate(loss: LossSpec, feeds: Record<string, ort.Tensor>) {
  const r = buildGradient(base(), { loss, wrt: ['x'] });
  const out = await runModel(r.model, feeds);
  return {
    loss: values(out[r.loss])[0],
    grad: values(out.grad_x),
    inputs: r.inputs,
    shape: out[r.loss].dims,
  };
}

function numericGrad(f: (x: number[]) => number, x: number[], h = 1e-6): number[] {
  return x.map((_, i) => {
    const p = [...x];
    const q = [...x];
    p[i] += h;
    q[i] -= h;
    return (f(p) - f(q)) / (2 * h);
  });
}

function expectClose(a: number[], b: number[], tol = 1e-7) {
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(tol * Math.max(1, Math.abs(b[i]))));
}

const x = randTensor('float64', [2, 3], 1);
const xs = values(x);
const yOf = (xv: number[]) => xv.map((v, i) => v * K[i % 3]);

describe('losses', () => {
  it('sumLoss and meanLoss', async () => {
    const s = await evaluate(sumLoss('y'), { x });
    expect(s.shape).toEqual([]);
    expect(s.loss).toBeCloseTo(
      yOf(xs).reduce((a, b) => a + b, 0),
      12,
    );
    expectClose(
      s.grad,
      xs.map((_, i) => K[i % 3]),
    );
    const m = await evaluate(meanLoss('y'), { x });
    expect(m.loss).toBeCloseTo(yOf(xs).reduce((a, b) => a + b, 0) / 6, 12);
  });

  it('mseLoss adds a target input and matches mean((y − t)²)', async () => {
    const t = randTensor('float64', [2, 3], 2);
    const f = (xv: number[]) => yOf(xv).reduce((a, v, i) => a + (v - values(t)[i]) ** 2, 0) / 6;
    const r = await evaluate(mseLoss('y'), { x, y_target: t });
    expect(r.inputs).toEqual(['x', 'y_target']);
    expect(r.loss).toBeCloseTo(f(xs), 12);
    expectClose(r.grad, numericGrad(f, xs));
    const sum = await evaluate(mseLoss('y', { input: 'ref' }, { reduction: 'sum', weight: 0.5 }), {
      x,
      ref: t,
    });
    expect(sum.loss).toBeCloseTo(f(xs) * 3, 12);
  });

  it('l1Loss with a broadcast mask (the L1 of a masked difference)', async () => {
    const t = randTensor('float64', [2, 3], 3);
    const mask = new ort.Tensor('float64', Float64Array.from([1, 0, 1]), [3]);
    const f = (xv: number[]) =>
      yOf(xv).reduce((a, v, i) => a + Math.abs(v - values(t)[i]) * values(mask)[i % 3], 0);
    const r = await evaluate(
      l1Loss('y', { input: 'z0' }, { mask: { input: 'm', shape: [3] }, reduction: 'sum' }),
      { x, z0: t, m: mask },
    );
    expect(r.loss).toBeCloseTo(f(xs), 12);
    expectClose(r.grad, numericGrad(f, xs));
  });

  it('cosineDistanceLoss along the last axis against a direction input', async () => {
    const d = randTensor('float64', [2, 3], 4);
    const dv = values(d);
    const f = (xv: number[]) => {
      const y = yOf(xv);
      let total = 0;
      for (let r = 0; r < 2; r++) {
        const a = y.slice(3 * r, 3 * r + 3);
        const b = dv.slice(3 * r, 3 * r + 3);
        const dot = a.reduce((s, v, i) => s + v * b[i], 0);
        const na = Math.hypot(...a);
        const nb = Math.hypot(...b);
        total += 1 - dot / Math.max(na * nb, 1e-8);
      }
      return total / 2;
    };
    const r = await evaluate(cosineDistanceLoss('y'), { x, y_direction: d });
    expect(r.loss).toBeCloseTo(f(xs), 12);
    expectClose(r.grad, numericGrad(f, xs), 1e-6);
  });

  it('combineLosses weights and shares inputs', async () => {
    const t = randTensor('float64', [2, 3], 5);
    const loss = combineLosses([
      { loss: mseLoss('y', { input: 't' }), weight: 2 },
      { loss: l1Loss('y', { input: 't' }), weight: 0.1 },
    ]);
    const r = await evaluate(loss, { x, t });
    const y = yOf(xs);
    const mse = y.reduce((a, v, i) => a + (v - values(t)[i]) ** 2, 0) / 6;
    const l1 = y.reduce((a, v, i) => a + Math.abs(v - values(t)[i]), 0) / 6;
    expect(r.inputs).toEqual(['x', 't']);
    expect(r.loss).toBeCloseTo(2 * mse + 0.1 * l1, 12);
  });

  it('customLoss builds with the GraphBuilder', async () => {
    const tv = customLoss('total variation', (b) => {
      const right = b.slice('y', [1], [3], [1]);
      const left = b.slice('y', [0], [2], [1]);
      const d = b.sub(right, left);
      return b.reduce('ReduceSum', b.mul(d, d), undefined, false);
    });
    const f = (xv: number[]) => {
      const y = yOf(xv);
      let s = 0;
      for (let r = 0; r < 2; r++) for (let c = 0; c < 2; c++) s += (y[3 * r + c + 1] - y[3 * r + c]) ** 2;
      return s;
    };
    const r = await evaluate(tv, { x });
    expect(r.loss).toBeCloseTo(f(xs), 12);
    expectClose(r.grad, numericGrad(f, xs));
  });

  it('attachLoss merges a loss model, binding some inputs and exposing the others', async () => {
    // A separately built "encoder + distance": e = tanh(features · P); loss = Σ (e − ref)².
    const lm = new TinyModel({ opset: 17 });
    const e = lm.node('Tanh', [
      lm.node('MatMul', [lm.input('features', [2, 3]), lm.randInit('P', [3, 2], 9)]),
    ]);
    const d = lm.node('Sub', [e, lm.input('ref', [2, 2])]);
    lm.output(lm.node('ReduceSum', [lm.node('Mul', [d, d])], { keepdims: 0 }, ['distance']));
    const loss = attachLoss(lm.model(), { bindings: { features: 'y' } });
    const r = buildGradient(base(), { loss, wrt: ['x'] });
    expect(r.inputs).toEqual(['x', 'ref']);
    expect(graphOf(r.model).initializer.some((t) => t.name === 'loss/P')).toBe(true);
    const ref = randTensor('float64', [2, 2], 6);
    const out = await runModel(r.model, { x, ref });
    const direct = await runModel(lm.model(), {
      features: new ort.Tensor('float64', Float64Array.from(yOf(xs)), [2, 3]),
      ref,
    });
    expect(values(out[r.loss])[0]).toBeCloseTo(values(direct.distance)[0], 12);
    expect(() =>
      buildGradient(base(), { loss: attachLoss(lm.model(), { bindings: { nope: 'y' } }), wrt: ['x'] }),
    ).toThrow(/no input 'nope'/);
    const other = new TinyModel({ opset: 13 });
    other.output(other.node('ReduceSum', [other.input('features', [2, 3])], { keepdims: 0 }));
    expect(() =>
      buildGradient(base(), { loss: attachLoss(other.model(), { bindings: { features: 'y' } }), wrt: ['x'] }),
    ).toThrow(/opset 13/);
  });
});
