import { describe, expect, it } from 'vitest';
import { gradcheck, randTensor, report, TinyModel, TOL } from './harness.js';

describe('smoke', () => {
  it('matmul + add', async () => {
    const m = new TinyModel({ opset: 17 });
    const x = m.input('x', [2, 3]);
    const w = m.randInit('w', [3, 4], 1);
    const bias = m.randInit('b', [4], 2);
    const y = m.node('Add', [m.node('MatMul', [x, w]), bias]);
    m.output(y);
    const r = await gradcheck(m.model(), {
      wrt: ['x', 'w', 'b'],
      feeds: { x: randTensor('float64', [2, 3], 3) },
    });
    report('matmul+add', 'float64', r);
    expect(r.maxError).toBeLessThan(TOL.float64);
  });
});
