/**
 * Losses built inside the graph, for `buildGradientModel(model, { loss: mseLoss('features'), … })`.
 *
 * Each returns a {@link LossSpec} that, when attached, adds nodes (names under `loss/`) and, where asked for,
 * new graph inputs (targets, masks, reference embeddings) that the caller feeds at run time. All reductions run
 * over every element and produce a rank-0 scalar.
 */
import { Graph, GraphBuilder, makeValueInfo, type Dim } from './graph.js';
import type { LossSpec } from './gradient.js';
import { toNumber, type ModelProto, type NodeProto } from './onnx_io.js';
import { onnx } from './onnx_io.js';

export type { LossSpec } from './gradient.js';

export type Reduction = 'mean' | 'sum';

/**
 * The second operand of a loss: an existing tensor of the graph, or a new graph input. A new input takes the
 * element type of the first operand and its shape (or `shape`); an input of that name that already exists is
 * reused, so several losses can share a mask.
 */
export type LossOperand = { tensor: string } | { input: string; shape?: readonly Dim[] };

function resolve(graph: Graph, operand: LossOperand, like: string): string {
  if ('tensor' in operand) {
    if (!graph.has(operand.tensor)) throw new Error(`loss: '${operand.tensor}' is not a tensor of the graph`);
    return operand.tensor;
  }
  if (graph.isInput(operand.input)) return operand.input;
  if (graph.has(operand.input))
    throw new Error(`loss: '${operand.input}' is already a tensor of the graph; choose another input name`);
  const type = graph.elemType(like);
  if (type === undefined) throw new Error(`loss: cannot tell the element type of '${like}'`);
  graph.addInput(makeValueInfo(operand.input, type, operand.shape ? [...operand.shape] : graph.shape(like)));
  return operand.input;
}

function checkTensor(graph: Graph, name: string): void {
  if (!graph.has(name)) throw new Error(`loss: '${name}' is not a tensor of the graph`);
}

function reduceAll(b: GraphBuilder, x: string, reduction: Reduction): string {
  return b.reduce(reduction === 'mean' ? 'ReduceMean' : 'ReduceSum', x, undefined, false);
}

/** Σ x over all elements. */
export function sumLoss(tensor: string): LossSpec {
  return {
    description: `sum(${tensor})`,
    attach(graph) {
      checkTensor(graph, tensor);
      return reduceAll(new GraphBuilder(graph, 'loss'), tensor, 'sum');
    },
  };
}

/** mean x over all elements. */
export function meanLoss(tensor: string): LossSpec {
  return {
    description: `mean(${tensor})`,
    attach(graph) {
      checkTensor(graph, tensor);
      return reduceAll(new GraphBuilder(graph, 'loss'), tensor, 'mean');
    },
  };
}

export interface MseOptions {
  reduction?: Reduction;
  /** Multiplies the loss (default 1). */
  weight?: number;
}

/** weight · mean (or Σ) of (x − target)²; the target defaults to a new input `<tensor>_target`. */
export function mseLoss(
  tensor: string,
  target: LossOperand = { input: `${tensor}_target` },
  options: MseOptions = {},
): LossSpec {
  return {
    description: `mse(${tensor})`,
    attach(graph) {
      checkTensor(graph, tensor);
      const b = new GraphBuilder(graph, 'loss');
      const t = resolve(graph, target, tensor);
      const d = b.sub(tensor, t);
      return b.scale(reduceAll(b, b.mul(d, d), options.reduction ?? 'mean'), options.weight ?? 1);
    },
  };
}

export interface L1Options {
  reduction?: Reduction;
  weight?: number;
  /** Multiplies |x − target| elementwise before reducing (broadcast), e.g. DragDiffusion's (1 − M) region mask. */
  mask?: LossOperand;
}

/**
 * weight · mean (or Σ) of |x − target| · mask: the L1 of a (masked) difference. The mean is over all elements,
 * masked or not, as in DragDiffusion's `((z − z₀) · (1 − M)).abs().sum()` up to the reduction.
 */
export function l1Loss(
  tensor: string,
  target: LossOperand = { input: `${tensor}_target` },
  options: L1Options = {},
): LossSpec {
  return {
    description: `l1(${tensor})`,
    attach(graph) {
      checkTensor(graph, tensor);
      const b = new GraphBuilder(graph, 'loss');
      const t = resolve(graph, target, tensor);
      let d = b.op('Abs', [b.sub(tensor, t)]);
      if (options.mask) d = b.mul(d, resolve(graph, options.mask, tensor));
      return b.scale(reduceAll(b, d, options.reduction ?? 'mean'), options.weight ?? 1);
    },
  };
}

export interface CosineOptions {
  /** The axis holding the vectors (default −1); the distance is averaged (or summed) over the others. */
  axis?: number;
  /** Lower bound of ‖a‖·‖b‖ (default 1e-8, as torch.nn.functional.cosine_similarity used to). */
  eps?: number;
  reduction?: Reduction;
  weight?: number;
}

/**
 * weight · mean of 1 − cos(a, b) along `axis`, e.g. DiffusionCLIP's directional CLIP loss with a = the image
 * embedding difference and b = the text direction (a new input by default: `<tensor>_direction`).
 */
export function cosineDistanceLoss(
  tensor: string,
  other: LossOperand = { input: `${tensor}_direction` },
  options: CosineOptions = {},
): LossSpec {
  return {
    description: `cosine(${tensor})`,
    attach(graph) {
      checkTensor(graph, tensor);
      const b = new GraphBuilder(graph, 'loss');
      const o = resolve(graph, other, tensor);
      const axis = [options.axis ?? -1];
      const dot = b.reduceSum(b.mul(tensor, o), axis, false);
      const na = b.reduceSum(b.mul(tensor, tensor), axis, false);
      const nb = b.reduceSum(b.mul(o, o), axis, false);
      const norms = b.op('Sqrt', [b.mul(na, nb)]);
      const eps = options.eps ?? 1e-8;
      const denom = b.op('Max', [norms, b.scalarLike(eps, tensor)]);
      const distance = b.sub(b.scalarLike(1, tensor), b.div(dot, denom));
      return b.scale(reduceAll(b, distance, options.reduction ?? 'mean'), options.weight ?? 1);
    },
  };
}

/** Σ weightᵢ · lossᵢ (e.g. a CLIP loss plus an identity-preserving L1). */
export function combineLosses(terms: readonly { loss: LossSpec | string; weight?: number }[]): LossSpec {
  if (terms.length === 0) throw new Error('combineLosses: no terms');
  return {
    description: terms.map((t) => (typeof t.loss === 'string' ? t.loss : t.loss.description)).join(' + '),
    attach(graph) {
      const b = new GraphBuilder(graph, 'loss');
      const parts = terms.map((t) => {
        const name = typeof t.loss === 'string' ? t.loss : t.loss.attach(graph);
        checkTensor(graph, name);
        return b.scale(name, t.weight ?? 1);
      });
      return b.sum(parts);
    },
  };
}

/** A loss written directly with the builder: `customLoss('tv', (b) => …return the scalar's name)`. */
export function customLoss(description: string, build: (b: GraphBuilder, graph: Graph) => string): LossSpec {
  return {
    description,
    attach(graph) {
      const b = new GraphBuilder(graph, 'loss');
      const name = build(b, graph);
      checkTensor(graph, name);
      return name;
    },
  };
}

export interface AttachOptions {
  /** Loss-model input → tensor of the main graph that feeds it. Unbound inputs become graph inputs (same name). */
  bindings: Readonly<Record<string, string>>;
  /** The loss model's output holding the loss (default: its only/first output). */
  output?: string;
  /** Prefix for the loss model's node, initializer and intermediate names (default 'loss/'). */
  prefix?: string;
}

/**
 * Attach a whole loss subgraph, e.g. a CLIP image encoder followed by a cosine distance, exported separately:
 * its inputs are bound to tensors of the main graph (or become new inputs), its internal names get a prefix so
 * they cannot clash, and its output is the loss. Both models must use the same default-domain opset.
 */
export function attachLoss(lossModel: ModelProto, options: AttachOptions): LossSpec {
  return {
    description: `attached(${lossModel.graph?.name ?? 'graph'})`,
    attach(graph) {
      const lg = lossModel.graph;
      if (!lg) throw new Error('attachLoss: the loss model has no graph');
      const lossOpset = toNumber(
        (lossModel.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0,
      );
      if (lossOpset !== graph.opset) {
        throw new Error(
          `attachLoss: the loss model uses opset ${lossOpset} but the graph uses ${graph.opset}; export both with the same opset`,
        );
      }
      const prefix = options.prefix ?? 'loss/';
      const rename = new Map<string, string>();
      const initNames = new Set((lg.initializer ?? []).map((t) => t.name ?? ''));
      for (const input of lg.input ?? []) {
        const name = input.name ?? '';
        if (initNames.has(name)) continue;
        const bound = options.bindings[name];
        if (bound !== undefined) {
          checkTensor(graph, bound);
          rename.set(name, bound);
        } else {
          if (!graph.isInput(name)) {
            if (graph.has(name))
              throw new Error(`attachLoss: unbound input '${name}' clashes with a tensor of the graph`);
            graph.addInput(onnx.ValueInfoProto.create(input));
          }
          rename.set(name, name);
        }
      }
      for (const key of Object.keys(options.bindings)) {
        if (!(lg.input ?? []).some((v) => v.name === key))
          throw new Error(`attachLoss: the loss model has no input '${key}'`);
      }
      const mapped = (n: string): string => {
        if (!n) return n;
        let r = rename.get(n);
        if (r === undefined) {
          r = graph.uniqueName(prefix + n);
          rename.set(n, r);
        }
        return r;
      };
      for (const t of lg.initializer ?? []) {
        const copy = onnx.TensorProto.create(t);
        copy.name = mapped(t.name ?? '');
        graph.addInitializer(copy);
      }
      for (const n of lg.node ?? []) {
        if ((n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length)) {
          throw new Error('attachLoss: loss models with subgraphs (If/Loop) are not supported');
        }
        const node = onnx.NodeProto.create({
          name: graph.uniqueName(prefix + (n.name || n.opType)),
          opType: n.opType,
          domain: n.domain,
          input: (n.input ?? []).map(mapped),
          output: (n.output ?? []).map(mapped),
          attribute: n.attribute,
        }) as NodeProto;
        graph.addNode(node);
      }
      const out = options.output ?? lg.output?.[0]?.name;
      if (!out || !(lg.output ?? []).some((o) => o.name === out))
        throw new Error(`attachLoss: the loss model has no output '${out}'`);
      return mapped(out);
    },
  };
}
