import { attrInts } from '../attrs.js';
import type { GradientRule } from './types.js';

/** y = transpose(x, perm): dx = transpose(dy, perm⁻¹); the default perm (reversal) is its own inverse. */
export const Transpose: GradientRule = (ctx) => {
  const perm = attrInts(ctx.node, 'perm');
  const dy = ctx.dyOrZeros(0);
  if (!perm) return [ctx.b.op('Transpose', [dy])];
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return [ctx.b.transpose(dy, inverse)];
};
