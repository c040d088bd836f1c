import type { GradientContext, GradientRule } from './types.js';

export function minMaxRule(ctx: GradientContext): (string | null)[] {
  const { b } = ctx;
  const dy = ctx.dyOrZeros(0);
  const y = ctx.output(0);
  return ctx.node.input.map((x, i) => {
    if (!ctx.needs[i]) return null;
    const picked = b.op('Where', [b.op('Equal', [x, y]), dy, b.scalarLike(0, dy)]);
    return b.reduceToShape(picked, x);
  });
}

/** y = min(x₀, x₁, …): the gradient goes to the inputs equal to y (every tied input gets all of it). */
export const Min: GradientRule = (ctx) => minMaxRule(ctx);
