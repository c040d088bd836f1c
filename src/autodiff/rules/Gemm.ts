import { attrFloat, attrInt } from '../attrs.js';
import type { GradientRule } from './types.js';

/**
 * y = α·A'·B' + β·C with A' = transA ? Aᵀ : A (likewise B'). Each gradient is one Gemm with the transposes
 * folded into its flags (opset 11+, where C is optional); older opsets get Transpose + MatMul.
 */
export const Gemm: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const [A, B, C] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  const dy = ctx.dyOrZeros(0);
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  const ta = attrInt(node, 'transA', 0) === 1;
  const tb = attrInt(node, 'transB', 0) === 1;
  const gemm = (p: string, q: string, transP: boolean, transQ: boolean): string => {
    if (ctx.opset >= 11) {
      return b.op('Gemm', [p, q], {
        alpha: { kind: 'float', value: alpha },
        transA: transP ? 1 : 0,
        transB: transQ ? 1 : 0,
      });
    }
    const pp = transP ? b.transpose(p, [1, 0]) : p;
    const qq = transQ ? b.transpose(q, [1, 0]) : q;
    return b.scale(b.op('MatMul', [pp, qq]), alpha);
  };
  const out: (string | null)[] = [null, null, null];
  if (ctx.needs[0]) out[0] = ta ? gemm(B, dy, tb, true) : gemm(dy, B, false, !tb);
  if (ctx.needs[1]) out[1] = tb ? gemm(dy, A, true, ta) : gemm(A, dy, !ta, false);
  if (C && ctx.needs[2]) out[2] = b.reduceToShape(b.scale(dy, beta), C);
  return out;
};
