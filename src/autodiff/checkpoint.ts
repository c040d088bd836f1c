/**
 * Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost") inside one ONNX graph.
 *
 * A gradient graph keeps every forward activation that a backward rule reads until that rule runs, so its peak
 * memory grows with the whole forward pass (SD 1.5 at 64² latents: 22.7 GB, most of it attention probabilities).
 * Here the forward nodes are cut into segments of about equal saved-activation bytes. For every segment but the
 * last, the backward rules are rewired to read a recomputed copy of the segment's activations, so the original
 * ones die as soon as the forward pass has used them; only the tensors that cross a segment boundary (and the
 * last segment) stay alive across the whole pass.
 *
 * ONNX has no control edges, and ONNX Runtime would (a) schedule a recomputation as early as its inputs allow, and
 * (b) merge it back into the original by common-subexpression elimination. Both are prevented by gating the
 * recomputation's inputs on the gradient that arrives at the segment's last output: x' = x + float(s > s), with
 * s = ΣdY. `s > s` is false for every s, NaN included, so x' = x exactly; but x' cannot be computed before dY, and
 * it is not the same expression as x.
 */
import { copyNode, Graph, GraphBuilder, implicitInputs } from './graph.js';
import { DataType, type NodeProto } from './onnx_io.js';

export interface CheckpointOptions {
  /** Cut the forward pass into this many segments of about equal saved-activation bytes. */
  segments?: number;
  /** Or: end a segment once the activations it saves for the backward pass reach this many bytes. */
  budgetBytes?: number;
}

export interface CheckpointReport {
  /** Segments made (the last one is not recomputed). */
  segments: number;
  /** Bytes of forward activations the backward pass reads, per segment (static shapes only). */
  savedBytes: number[];
  /** Forward nodes run a second time during the backward pass. */
  recomputedNodes: number;
  /** Forward nodes in all. */
  forwardNodes: number;
}

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.BFLOAT16]);

const ELEMENT_BYTES: Partial<Record<number, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.FLOAT16]: 2,
  [DataType.BFLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.BOOL]: 1,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
};

function tensorBytes(graph: Graph, name: string): number {
  const shape = graph.shape(name);
  const type = graph.elemType(name);
  if (!shape || type === undefined || shape.some((d) => typeof d !== 'number')) return 0;
  return (shape as number[]).reduce((a, b) => a * b, 1) * (ELEMENT_BYTES[type] ?? 4);
}

/**
 * Where the segments start, as indices into `forward`: cumulative saved bytes cut at equal shares, each cut then
 * moved (within a window) to where the fewest bytes cross it. A cut just after an attention's softmax would make its
 * probabilities a boundary tensor, kept for the whole backward pass; at a block boundary only the hidden state and
 * the skip connections cross.
 */
function segmentStarts(
  perNode: readonly number[],
  crossing: Float64Array,
  options: CheckpointOptions,
): number[] {
  const naive = quantileStarts(perNode, options);
  const window = Math.max(8, Math.floor(perNode.length / (4 * naive.length)));
  const starts = [0];
  for (const start of naive.slice(1)) {
    let best = -1;
    for (
      let j = Math.max(starts.at(-1)! + 1, start - window);
      j <= Math.min(perNode.length - 1, start + window);
      j++
    ) {
      if (best < 0 || crossing[j] < crossing[best]) best = j;
    }
    if (best > starts.at(-1)!) starts.push(best);
  }
  return starts;
}

function quantileStarts(perNode: readonly number[], options: CheckpointOptions): number[] {
  const total = perNode.reduce((a, b) => a + b, 0);
  const count = perNode.length;
  let budget: number;
  if (options.budgetBytes !== undefined) {
    if (!(options.budgetBytes > 0)) throw new Error('checkpoint.budgetBytes must be a positive number');
    budget = options.budgetBytes;
  } else {
    const segments = options.segments ?? 1;
    if (!Number.isInteger(segments) || segments < 1)
      throw new Error(`checkpoint.segments must be a positive integer, got ${segments}`);
    if (total === 0) {
      // No static sizes: equal node counts.
      return Array.from({ length: Math.min(segments, count) }, (_, k) => Math.floor((k * count) / segments));
    }
    // Cut where the running total first reaches k/N of the whole.
    const starts = [0];
    let running = 0;
    for (let i = 0; i < count - 1 && starts.length < segments; i++) {
      running += perNode[i];
      if (running >= (starts.length * total) / segments) starts.push(i + 1);
    }
    return starts;
  }
  const starts = [0];
  let accumulated = 0;
  for (let i = 0; i < count - 1; i++) {
    accumulated += perNode[i];
    if (accumulated >= budget * (1 - 1e-9)) {
      starts.push(i + 1);
      accumulated = 0;
    }
  }
  return starts;
}

/**
 * Rewrite a gradient graph (forward nodes `forward`, then the backward nodes in `graph.nodes`) so that the backward
 * pass recomputes segment activations instead of keeping them. `gradientOf` maps forward tensors to their total
 * gradient tensors. Nodes with subgraphs are never recomputed (their outputs are kept).
 */
export function applyCheckpointing(
  graph: Graph,
  forward: readonly NodeProto[],
  gradientOf: ReadonlyMap<string, string>,
  options: CheckpointOptions,
): CheckpointReport {
  const forwardSet = new Set(forward);
  const backwardNodes = graph.nodes.filter((n) => !forwardSet.has(n));
  const producedAt = new Map<string, number>();
  forward.forEach((n, i) => n.output.forEach((o) => o && producedAt.set(o, i)));
  // The last forward position reading each tensor (forward consumers only).
  const lastForwardUse = new Map<string, number>();
  forward.forEach((n, i) => {
    for (const name of [...n.input, ...implicitInputs(n)]) if (name) lastForwardUse.set(name, i);
  });
  const saved = new Set<string>();
  for (const n of backwardNodes) for (const i of n.input) if (producedAt.has(i)) saved.add(i);
  const outputs = new Set(graph.outputs.map((v) => v.name));

  const perNode = forward.map((n) =>
    n.output.filter((o) => saved.has(o)).reduce((a, o) => a + tensorBytes(graph, o), 0),
  );
  // crossing[j]: bytes of forward tensors made before position j and read at or after it.
  const crossing = new Float64Array(forward.length + 1);
  forward.forEach((n, p) =>
    n.output.forEach((o) => {
      const u = o ? (lastForwardUse.get(o) ?? -1) : -1;
      if (u <= p) return;
      const b = tensorBytes(graph, o);
      crossing[p + 1] += b;
      crossing[u + 1] -= b;
    }),
  );
  for (let j = 1; j <= forward.length; j++) crossing[j] += crossing[j - 1];
  const starts = segmentStarts(perNode, crossing, options);
  const savedBytes = starts.map((start, s) =>
    perNode.slice(start, starts[s + 1] ?? forward.length).reduce((a, b) => a + b, 0),
  );

  const renamed = new Map<string, string>();
  const clones: NodeProto[] = [];
  const builder = new GraphBuilder(graph);
  for (let s = 0; s < starts.length - 1; s++) {
    const start = starts[s];
    const end = starts[s + 1];
    const inSegment = (name: string) => {
      const p = producedAt.get(name);
      return p !== undefined && p >= start && p < end;
    };
    // Kept: read by a later segment, or a model output. They stay alive anyway.
    const kept = (name: string) => (lastForwardUse.get(name) ?? -1) >= end || outputs.has(name);
    const hasSubgraph = (n: NodeProto) => (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length);

    const targets = [...saved].filter(
      (t) => inSegment(t) && !kept(t) && !hasSubgraph(forward[producedAt.get(t)!]),
    );
    if (targets.length === 0) continue;

    // The gate: the gradient of a tensor this segment produces and only later segments read, latest first. Its
    // gradient is complete only once the backward pass has come back to this segment.
    let gate: string | undefined;
    for (let i = end - 1; i >= start && gate === undefined; i--) {
      for (const o of forward[i].output) {
        if (!o || !gradientOf.has(o)) continue;
        const readInside = forward
          .slice(i + 1, end)
          .some((n) => n.input.includes(o) || implicitInputs(n).has(o));
        if (!readInside) {
          gate = gradientOf.get(o);
          break;
        }
      }
    }
    if (gate === undefined) continue;

    // The nodes to run again: what the targets need, back to kept tensors and earlier segments.
    const needed = new Set<number>();
    const external = new Set<string>();
    const stack = [...targets];
    const visited = new Set<string>();
    while (stack.length) {
      const name = stack.pop()!;
      if (visited.has(name)) continue;
      visited.add(name);
      const p = producedAt.get(name);
      const producer = p === undefined ? undefined : forward[p];
      if (!inSegment(name) || kept(name) || !producer || hasSubgraph(producer)) {
        if (name && !graph.isInitializer(name)) external.add(name);
        continue;
      }
      if (needed.has(p!)) continue;
      needed.add(p!);
      for (const i of producer.input) if (i) stack.push(i);
    }

    const b = builder.scoped(`checkpoint/segment${s}`);
    const sum = b.reduceSum(gate, undefined, false);
    const never = b.op('Greater', [sum, sum]);
    const zeroOf = new Map<number, string>();
    const gated = new Map<string, string>();
    for (const name of external) {
      const type = graph.elemType(name);
      if (type === undefined || !FLOAT_TYPES.has(type)) continue;
      let zero = zeroOf.get(type);
      if (!zero) {
        zero = b.cast(never, type);
        zeroOf.set(type, zero);
      }
      gated.set(name, b.add(name, zero));
    }
    const local = new Map<string, string>();
    for (const index of [...needed].sort((x, y) => x - y)) {
      const original = forward[index];
      const clone = copyNode(original);
      clone.name = graph.uniqueName(`${original.name || original.opType}/recompute${s}`);
      clone.input = original.input.map((i) => local.get(i) ?? gated.get(i) ?? i);
      clone.output = original.output.map((o) => {
        if (!o) return o;
        const name = graph.uniqueName(`${o}/recompute${s}`);
        local.set(o, name);
        return name;
      });
      graph.addNode(clone);
      clones.push(clone);
    }
    for (const t of targets) renamed.set(t, local.get(t)!);
  }

  for (const n of backwardNodes) n.input = n.input.map((i) => renamed.get(i) ?? i);
  graph.invalidate();
  return {
    segments: starts.length,
    savedBytes,
    recomputedNodes: clones.length,
    forwardNodes: forward.length,
  };
}

/**
 * The largest sum of live activation bytes when `graph`'s nodes run in their listed order, each tensor freed after
 * its last reader (inputs, initializers and outputs not counted; static shapes only). ONNX Runtime orders and
 * plans on its own, so this is an estimate to compare graphs by; the benches measure the real peak.
 */
export function estimatePeakLiveBytes(graph: Graph): number {
  const lastUse = new Map<string, number>();
  graph.nodes.forEach((n, i) => n.input.forEach((x) => x && lastUse.set(x, i)));
  const outputs = new Set(graph.outputs.map((v) => v.name));
  let live = 0;
  let peak = 0;
  graph.nodes.forEach((n, i) => {
    for (const o of n.output) if (o) live += tensorBytes(graph, o);
    peak = Math.max(peak, live);
    for (const x of new Set(n.input)) {
      if (!x || lastUse.get(x) !== i || outputs.has(x)) continue;
      if (graph.isInitializer(x) || graph.isInput(x)) continue;
      live -= tensorBytes(graph, x);
    }
    // Outputs nobody reads die at once.
    for (const o of n.output) if (o && !lastUse.has(o) && !outputs.has(o)) live -= tensorBytes(graph, o);
  });
  return peak;
}
