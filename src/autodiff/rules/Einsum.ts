import { attrString } from '../attrs.js';
import { parseEinsum } from '../infer.js';
import type { GradientRule } from './types.js';

/**
 * y = einsum(eq, x₀, x₁, …). The gradient of operand i is again an Einsum: of dy with the other operands, onto
 * operand i's subscripts ("bij,bjd->bid" gives da = einsum("bid,bjd->bij", dy, b)). Subscripts that appear only
 * in operand i (summed away) are left out and restored by Expand. Ellipsis dims are summed back to the operand's
 * shape when they were broadcast. Repeated subscripts within one operand (diagonals) are not supported.
 */
export const Einsum: GradientRule = (ctx) => {
  const { b, node } = ctx;
  const spec = parseEinsum(attrString(node, 'equation', ''));
  const dy = ctx.dyOrZeros(0);
  const letters = (term: string) => term.replace('...', '').split('');
  return node.input.map((x, i) => {
    if (!ctx.needs[i]) return null;
    const term = spec.inputs[i];
    const own = letters(term);
    if (new Set(own).size !== own.length)
      throw ctx.error(`operand ${i} ('${term}') repeats a subscript (a diagonal); not supported`);
    if (term.includes('...') && !spec.output.includes('...')) {
      throw ctx.error(`operand ${i} ('${term}') has an ellipsis that the output sums away; not supported`);
    }
    const elsewhere = new Set<string>([
      ...letters(spec.output),
      ...spec.inputs.flatMap((t, k) => (k === i ? [] : letters(t))),
    ]);
    const kept = own.filter((c) => elsewhere.has(c));
    const dropped = own.map((c, k) => ({ c, k })).filter(({ c }) => !elsewhere.has(c));
    const others = node.input.map((name, k) => ({ name, term: spec.inputs[k] })).filter((_, k) => k !== i);
    // Keep operand i's order, with the ellipsis where it was.
    let target = '';
    let k = 0;
    while (k < term.length) {
      if (term.startsWith('...', k)) {
        target += '...';
        k += 3;
      } else {
        if (kept.includes(term[k])) target += term[k];
        k++;
      }
    }
    const eq = [spec.output, ...others.map((o) => o.term)].join(',') + '->' + target;
    let g = b.op('Einsum', [dy, ...others.map((o) => o.name)], { equation: eq });
    if (dropped.length > 0) {
      // Positions of the dropped subscripts in operand i's full index list (the ellipsis expanded).
      const rank = ctx.graph.rank(x);
      const ellipsisAt = term.indexOf('...');
      if (ellipsisAt >= 0 && rank === undefined)
        throw ctx.error(`the rank of operand ${i} (with an ellipsis) is unknown`);
      const ellRank = ellipsisAt >= 0 ? rank! - own.length : 0;
      const axes = dropped.map(({ k: pos }) => (ellipsisAt >= 0 && pos >= ellipsisAt ? pos + ellRank : pos));
      g = b.expandLike(b.unsqueeze(g, axes), x);
    }
    return term.includes('...') ? b.reduceToShape(g, x) : g;
  });
};
