/**
 * Helpers shared by several rules (axis handling, normalization backward, expanding reduced gradients).
 */
import { attrInts, attrInt } from '../attrs.js';
import type { GraphBuilder } from '../graph.js';
import type { GradientContext } from './types.js';

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** The rank of a forward tensor, which the rule cannot do without. */
export function requireRank(ctx: GradientContext, name: string): number {
  const r = ctx.graph.rank(name);
  if (r === undefined) {
    throw ctx.error(
      `the rank of '${name}' is unknown; give the graph inputs shapes (value_info or inputShapes)`,
    );
  }
  return r;
}

/** The incoming gradient of a single-output node (the driver never calls a rule without one). */
export function dy0(ctx: GradientContext): string {
  return ctx.dyOrZeros(0);
}

/** Range [from, to). */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

/**
 * Backward of x̂ = (x − mean(x)) · inv over `axes`, given g = dL/dx̂:
 * dx = inv · (g − mean(g) − x̂ · mean(g · x̂)).
 */
export function normalizeBackward(
  b: GraphBuilder,
  g: string,
  xhat: string,
  inv: string,
  axes: readonly number[],
): string {
  const meanG = b.reduceMean(g, axes, true);
  const meanGX = b.reduceMean(b.mul(g, xhat), axes, true);
  return b.mul(inv, b.sub(b.sub(g, meanG), b.mul(xhat, meanGX)));
}

/** x̂ and 1/σ of x over `axes` (recomputed: the forward node does not expose them). */
export function normalizeForward(
  b: GraphBuilder,
  x: string,
  axes: readonly number[],
  epsilon: number,
): { xhat: string; inv: string } {
  const mean = b.reduceMean(x, axes, true);
  const centered = b.sub(x, mean);
  const variance = b.reduceMean(b.mul(centered, centered), axes, true);
  const inv = b.op('Reciprocal', [b.op('Sqrt', [b.add(variance, b.scalarLike(epsilon, x))])]);
  return { xhat: b.mul(centered, inv), inv };
}

/** Axes of a Reduce* node in the node's opset: a static list, a runtime tensor name, or undefined (all). */
export function reduceAxes(ctx: GradientContext): number[] | string | undefined {
  const { node } = ctx;
  const inputForm = node.opType === 'ReduceSum' ? ctx.opset >= 13 : ctx.opset >= 18;
  if (!inputForm) return attrInts(node, 'axes');
  const name = ctx.input(1);
  if (!name) return undefined;
  const v = ctx.graph.constValue(name);
  return v ? v.values : name;
}

/**
 * Bring a tensor shaped like a Reduce* output (`t`) back to the input's shape: re-insert reduced axes when
 * keepdims=0, then broadcast.
 */
export function expandReduced(ctx: GradientContext, t: string): string {
  const { b, node } = ctx;
  const x = ctx.input(0);
  const keep = attrInt(node, 'keepdims', 1) === 1;
  const noop = attrInt(node, 'noop_with_empty_axes', 0) === 1;
  const axes = reduceAxes(ctx);
  if (Array.isArray(axes) && axes.length === 0 && noop) return t;
  let k = t;
  if (!keep && axes !== undefined && !(Array.isArray(axes) && axes.length === 0)) k = b.unsqueeze(t, axes);
  return b.expandLike(k, x);
}
