/**
 * Host optimizers against torch.optim trajectories (tests/fixtures/autodiff/optim_reference.json, written by
 * training/reference/autodiff_optim.py), and basic behaviour.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Adam, AdamW, clipGradNorm, SGD, type Optimizer } from '../../src/autodiff/optim.js';

interface Reference {
  init: number[];
  grads: number[][];
  cases: {
    name: string;
    kind: 'SGD' | 'Adam' | 'AdamW';
    options: Record<string, number | boolean | number[]>;
    after: number[][];
  }[];
}

const REF = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', 'fixtures', 'autodiff', 'optim_reference.json'), 'utf8'),
) as Reference;

function make(
  kind: string,
  params: Record<string, Float32Array>,
  o: Record<string, number | boolean | number[]>,
): Optimizer {
  if (kind === 'SGD') {
    return new SGD(params, {
      lr: o.lr as number,
      momentum: o.momentum as number | undefined,
      dampening: o.dampening as number | undefined,
      nesterov: o.nesterov as boolean | undefined,
      weightDecay: o.weight_decay as number | undefined,
    });
  }
  const options = {
    lr: o.lr as number,
    betas: o.betas as [number, number] | undefined,
    eps: o.eps as number | undefined,
    weightDecay: o.weight_decay as number | undefined,
    amsgrad: o.amsgrad as boolean | undefined,
  };
  return kind === 'Adam' ? new Adam(params, options) : new AdamW(params, options);
}

describe('optimizers match torch.optim', () => {
  it.each(REF.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const p = Float32Array.from(REF.init);
    const opt = make(c.kind, { p }, c.options);
    REF.grads.forEach((g, k) => {
      opt.step({ p: g });
      c.after[k].forEach((v, i) => expect(Math.abs(p[i] - v)).toBeLessThan(2e-6 * Math.max(1, Math.abs(v))));
    });
    expect(opt.steps).toBe(REF.grads.length);
  });
});

describe('optimizer behaviour', () => {
  it('minimizes a quadratic; parameters without gradients stay put', () => {
    const x = Float32Array.from([3, -2, 1]);
    const frozen = Float32Array.from([5]);
    const opt = new Adam({ x, frozen }, { lr: 0.1 });
    for (let k = 0; k < 300; k++) opt.step({ x: Array.from(x, (v, i) => 2 * (v - i)) });
    Array.from(x).forEach((v, i) => expect(v).toBeCloseTo(i, 2));
    expect(frozen[0]).toBe(5);
  });

  it('checks gradient sizes and options', () => {
    const opt = new SGD({ x: new Float32Array(3) }, { lr: 1 });
    expect(() => opt.step({ x: [1, 2] })).toThrow(/2 values, the parameter 3/);
    expect(() => new SGD({ x: new Float32Array(1) }, { lr: 1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => new Adam({})).toThrow(/no parameters/);
  });

  it('lr can change between steps', () => {
    const x = Float32Array.from([1]);
    const opt = new SGD({ x }, { lr: 0.5 });
    opt.step({ x: [1] });
    opt.lr = 0.25;
    opt.step({ x: [1] });
    expect(x[0]).toBeCloseTo(0.25, 7);
  });

  it('clipGradNorm scales to the maximum norm', () => {
    const g = { a: Float32Array.from([3, 0]), b: Float32Array.from([4]) };
    expect(clipGradNorm(g, 1)).toBeCloseTo(5, 6);
    expect(Math.hypot(g.a[0], g.a[1], g.b[0])).toBeCloseTo(1, 5);
    expect(clipGradNorm(g, 10)).toBeCloseTo(1, 5);
  });
});
