/**
 * Reverse-mode differentiation of an ONNX graph into a new ONNX model.
 *
 * The result contains the (pruned) forward pass followed by a backward pass made only of standard operators of
 * the model's own default-domain opset, so it runs on every ONNX Runtime execution provider. The model's
 * outputs are, in order: the requested `outputs`, the `loss`, then one `grad_<name>` per `wrt` entry (see
 * {@link gradientName}).
 *
 * The algorithm is the textbook one (micrograd's `backward`, on a static graph): find the tensors that both
 * depend on a `wrt` entry and influence the loss, seed d loss/d loss = 1, walk the nodes in reverse topological
 * order calling each operator's rule (./rules), and sum the contributions of tensors used more than once.
 */
import { describeNode, Graph, GraphBuilder, implicitInputs, makeValueInfo } from './graph.js';
import { applyCheckpointing, type CheckpointOptions, type CheckpointReport } from './checkpoint.js';
import { isStatic } from './infer.js';
import { onnx, tensorDims, type ModelProto, type NodeProto } from './onnx_io.js';
import { getGradientRule, isNonDifferentiableOp } from './rules/index.js';
import type { GradientContext } from './rules/types.js';

/** A loss built inside the graph (see ./losses.ts): adds nodes and inputs, returns the scalar loss tensor. */
export interface LossSpec {
  /** A short description for error messages, e.g. `mse(features, target)`. */
  readonly description: string;
  attach(graph: Graph): string;
}

export interface GradientOptions {
  /** The scalar loss: a tensor of the graph, or a loss from ./losses.ts that builds one. */
  loss: string | LossSpec;
  /**
   * What to differentiate with respect to: graph inputs (latents, embeddings), initializers (weights, LoRA
   * factors) or intermediate tensors (then the gradient holds everything upstream of it fixed).
   */
  wrt: readonly string[];
  /** Forward tensors to output as well, intermediate ones included (e.g. a UNet decoder block's output). */
  outputs?: readonly string[];
  /**
   * Initializers in `wrt` to turn into graph inputs, so a training loop can feed the current value each step:
   * `true` for all of them or a list of names. They are then fed like any input (same name, type and shape).
   */
  promote?: boolean | readonly string[];
  /**
   * Keep promoted initializers as the inputs' default values (ONNX lets an initializer shadow an input), so
   * feeding them is optional. Default false: the values are dropped, which keeps the model small.
   */
  keepPromotedDefaults?: boolean;
  /** A `wrt` entry that does not influence the loss: 'error' (default) or 'zeros' (output a zero gradient). */
  onDisconnected?: 'error' | 'zeros';
  /**
   * Fix the shapes of graph inputs (e.g. `{ sample: [1, 4, 64, 64] }`). Inference then knows every size and
   * the backward pass needs fewer runtime shape computations; the model then accepts only these shapes.
   */
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  /**
   * Trade compute for memory: recompute segments of the forward pass during the backward pass instead of keeping
   * their activations (see ./checkpoint.ts). Off by default.
   */
  checkpoint?: CheckpointOptions;
}

export interface GradientResult {
  model: ModelProto;
  /** The loss tensor's name (as built when `loss` was a LossSpec). */
  loss: string;
  /** wrt name → output name of its gradient. */
  gradients: Record<string, string>;
  /** The model's inputs, in order (including inputs added by the loss and promoted initializers). */
  inputs: string[];
  /** The model's outputs, in order. */
  outputs: string[];
  /** What checkpointing did, when it was asked for. */
  checkpoint?: CheckpointReport;
}

/** The output name of the gradient of `name`: `grad_` + the name as is (`grad_unet.conv_in.weight`). */
export function gradientName(name: string): string {
  return `grad_${name}`;
}

/** {@link buildGradient}, returning only the model. */
export function buildGradientModel(model: ModelProto, options: GradientOptions): ModelProto {
  return buildGradient(model, options).model;
}

export function buildGradient(model: ModelProto, options: GradientOptions): GradientResult {
  const graph = Graph.fromModel(model);
  if (graph.opset === 0) throw new Error('the model imports no default-domain opset');
  if (graph.opset < 9) {
    throw new Error(
      `the model uses opset ${graph.opset}; gradients need opset 9+ (Expand, Where, ConstantOfShape); re-export it`,
    );
  }
  if (options.inputShapes) fixInputShapes(graph, options.inputShapes);

  for (const w of options.wrt) {
    if (!graph.has(w)) throw new Error(`wrt: '${w}' is not an input, initializer or tensor of the graph`);
    if (!graph.isDifferentiable(w)) {
      throw new Error(`wrt: '${w}' has type ${typeNameOf(graph, w)}; only float tensors have gradients`);
    }
  }
  if (new Set(options.wrt).size !== options.wrt.length) throw new Error('wrt: names must be unique');
  const extra = options.outputs ?? [];
  for (const o of extra) if (!graph.has(o)) throw new Error(`outputs: '${o}' is not a tensor of the graph`);

  const loss = typeof options.loss === 'string' ? options.loss : options.loss.attach(graph);
  if (!graph.has(loss)) throw new Error(`loss: '${loss}' is not a tensor of the graph`);
  if (!graph.isDifferentiable(loss))
    throw new Error(`loss: '${loss}' has type ${typeNameOf(graph, loss)}, not a float type`);
  const lossShape = graph.shape(loss);
  if (lossShape && isStatic(lossShape) && lossShape.reduce((a, b) => a * b, 1) !== 1) {
    throw new Error(
      `loss: '${loss}' has shape [${lossShape.join(', ')}]; it must be a scalar (reduce it with sum or mean)`,
    );
  }

  graph.topologicalSort();
  // wrt tensors are targets too: an intermediate one off the loss's path still needs a value for its zeros.
  prune(graph, [...extra, loss, ...options.wrt], [], new Set(options.wrt));
  promoteInitializers(graph, options);
  graph.invalidate();

  const forward = [...graph.nodes];
  const { gradients, gradientOf } = backward(graph, loss, options);

  const outputs = uniqueList([...extra, loss, ...options.wrt.map((w) => gradients[w])]);
  graph.outputs = outputs.map((name) => {
    const w = options.wrt.find((x) => gradients[x] === name);
    if (w !== undefined) {
      const info = graph.info(w);
      return info.type === undefined
        ? onnx.ValueInfoProto.create({ name })
        : makeValueInfo(name, info.type, info.shape);
    }
    return valueInfoOrName(graph, name);
  });
  const checkpoint = options.checkpoint
    ? applyCheckpointing(graph, forward, gradientOf, options.checkpoint)
    : undefined;
  // Rules may leave helpers unused (a shape constant folded away); drop them, keeping every input.
  prune(graph, outputs, [], new Set(graph.inputs.map((v) => v.name)));
  graph.topologicalSort();
  dropUnusedValueInfo(graph);
  return {
    model: graph.toModel(),
    loss,
    gradients,
    inputs: graph.inputs.map((v) => v.name),
    outputs,
    checkpoint,
  };
}

/** ValueInfo for an output; a bare name where inference cannot tell the type (ONNX Runtime infers it). */
function valueInfoOrName(graph: Graph, name: string) {
  return graph.elemType(name) === undefined
    ? onnx.ValueInfoProto.create({ name })
    : graph.makeValueInfo(name);
}

function typeNameOf(graph: Graph, name: string): string {
  const t = graph.elemType(name);
  return t === undefined ? 'unknown' : String(onnx.TensorProto.DataType[t] ?? t).toLowerCase();
}

function uniqueList(names: readonly string[]): string[] {
  return [...new Set(names)];
}

function fixInputShapes(graph: Graph, shapes: Readonly<Record<string, readonly number[]>>): void {
  for (const [name, dims] of Object.entries(shapes)) {
    const i = graph.inputs.findIndex((v) => v.name === name);
    if (i < 0) throw new Error(`inputShapes: '${name}' is not a graph input`);
    const type = graph.inputs[i].type?.tensorType?.elemType;
    if (type === undefined || type === null) throw new Error(`inputShapes: input '${name}' is not a tensor`);
    const declared = graph.shape(name);
    if (declared && declared.length !== dims.length) {
      throw new Error(`inputShapes: '${name}' has rank ${declared.length}, got [${dims.join(', ')}]`);
    }
    declared?.forEach((d, k) => {
      if (typeof d === 'number' && d !== dims[k]) {
        throw new Error(`inputShapes: dim ${k} of '${name}' is fixed to ${d}, got ${dims[k]}`);
      }
    });
    graph.inputs[i] = makeValueInfo(name, type, [...dims]);
  }
  graph.invalidate();
}

function promoteInitializers(graph: Graph, options: GradientOptions): void {
  const p = options.promote;
  if (!p) return;
  const names = p === true ? options.wrt.filter((w) => graph.isInitializer(w)) : [...p];
  for (const name of names) {
    if (!options.wrt.includes(name)) throw new Error(`promote: '${name}' is not in wrt`);
    const init = graph.initializers.get(name);
    if (!init) {
      if (graph.isInput(name)) continue;
      throw new Error(`promote: '${name}' is not an initializer`);
    }
    if (!graph.isInput(name)) graph.addInput(makeValueInfo(name, init.dataType, tensorDims(init)));
    if (!options.keepPromotedDefaults) graph.initializers.delete(name);
  }
  if (options.keepPromotedDefaults && graph.irVersion < 4) {
    throw new Error(
      `keepPromotedDefaults needs IR version 4+ (initializers shadowing inputs); the model has ${graph.irVersion}`,
    );
  }
}

/**
 * Keep only the nodes that `targets` need, reading `cuts` as given inputs. Graph inputs that are no longer
 * read are dropped (except those in `keep`), as are unused initializers and value_info.
 */
function prune(
  graph: Graph,
  targets: readonly string[],
  cuts: readonly string[],
  keep: ReadonlySet<string>,
): void {
  const cutSet = new Set(cuts);
  const producer = new Map<string, number>();
  graph.nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const needed = new Set<string>();
  const keepNode = new Uint8Array(graph.nodes.length);
  const stack = [...targets];
  while (stack.length) {
    const name = stack.pop()!;
    if (needed.has(name)) continue;
    needed.add(name);
    if (cutSet.has(name)) continue;
    const p = producer.get(name);
    if (p === undefined || keepNode[p]) continue;
    keepNode[p] = 1;
    const n = graph.nodes[p];
    for (const i of n.input) if (i) stack.push(i);
    for (const i of implicitOf(n)) stack.push(i);
  }
  graph.nodes = graph.nodes.filter((_, i) => keepNode[i]);
  for (const c of cuts) {
    if (!graph.isInput(c)) {
      const info = graph.info(c);
      if (info.type === undefined) throw new Error(`cannot cut at '${c}': its element type is unknown`);
      graph.inputs.push(makeValueInfo(c, info.type, info.shape));
    }
    graph.initializers.delete(c);
  }
  graph.inputs = graph.inputs.filter((v) => needed.has(v.name) || keep.has(v.name));
  for (const k of [...graph.initializers.keys()])
    if (!needed.has(k) && !keep.has(k)) graph.initializers.delete(k);
  graph.invalidate();
}

function implicitOf(n: NodeProto): string[] {
  return (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length) ? [...implicitInputs(n)] : [];
}

function dropUnusedValueInfo(graph: Graph): void {
  const used = new Set<string>();
  for (const n of graph.nodes) n.output.forEach((o) => used.add(o));
  for (const k of [...graph.valueInfo.keys()]) {
    if (!used.has(k) || graph.isOutput(k)) graph.valueInfo.delete(k);
  }
}

/**
 * A model computing `outputs` from the original inputs, with everything else removed (ONNX's
 * `extract_model`). Tensors listed in `inputs` become graph inputs, cutting off whatever computed them.
 */
export function extractSubgraph(
  model: ModelProto,
  outputs: readonly string[],
  options: { inputs?: readonly string[] } = {},
): ModelProto {
  const graph = Graph.fromModel(model);
  for (const o of outputs)
    if (!graph.has(o)) throw new Error(`extractSubgraph: '${o}' is not a tensor of the graph`);
  for (const i of options.inputs ?? [])
    if (!graph.has(i)) throw new Error(`extractSubgraph: '${i}' is not a tensor of the graph`);
  graph.topologicalSort();
  const infos = outputs.map((o) => ({ name: o, info: graph.info(o) }));
  prune(graph, outputs, options.inputs ?? [], new Set());
  graph.outputs = infos.map(({ name, info }) =>
    info.type === undefined
      ? onnx.ValueInfoProto.create({ name })
      : makeValueInfo(name, info.type, info.shape),
  );
  dropUnusedValueInfo(graph);
  return graph.toModel();
}

// -----------------------------------------------------------------------------------------------------------
// The backward pass
// -----------------------------------------------------------------------------------------------------------

function backward(
  graph: Graph,
  loss: string,
  options: GradientOptions,
): { gradients: Record<string, string>; gradientOf: ReadonlyMap<string, string> } {
  const forward = [...graph.nodes];
  const wrt = new Set(options.wrt);

  // Tensors that depend on a wrt entry through differentiable edges.
  const active = new Set<string>(wrt);
  for (const n of forward) {
    if (isNonDifferentiableOp(n.opType, n.domain ?? '')) continue;
    if (!n.input.some((i) => active.has(i))) continue;
    for (const o of n.output) if (o && graph.isDifferentiable(o)) active.add(o);
  }
  // Tensors whose value influences the loss through differentiable edges.
  const reaches = new Set<string>([loss]);
  for (let k = forward.length - 1; k >= 0; k--) {
    const n = forward[k];
    if (isNonDifferentiableOp(n.opType, n.domain ?? '')) continue;
    if (!n.output.some((o) => reaches.has(o))) continue;
    for (const i of n.input) if (i) reaches.add(i);
  }
  const useful = (name: string) =>
    name !== '' && active.has(name) && reaches.has(name) && graph.isDifferentiable(name);

  const root = new GraphBuilder(graph, 'grad');
  const contributions = new Map<string, string[]>();
  const contribute = (name: string, grad: string) => {
    const list = contributions.get(name);
    if (list) list.push(grad);
    else contributions.set(name, [grad]);
  };
  const accumulated = new Map<string, string>();
  const total = (name: string, b: GraphBuilder): string | null => {
    const done = accumulated.get(name);
    if (done) return done;
    const list = contributions.get(name);
    if (!list || list.length === 0) return null;
    const sum = b.sum(list);
    accumulated.set(name, sum);
    return sum;
  };

  if (useful(loss)) contribute(loss, root.scoped('grad/seed').onesLike(loss));

  for (let k = forward.length - 1; k >= 0; k--) {
    const node = forward[k];
    if (isNonDifferentiableOp(node.opType, node.domain ?? '')) continue;
    const needs = node.input.map((i) => useful(i));
    if (!needs.some(Boolean)) continue;
    if (!node.output.some((o) => useful(o))) continue;
    // torch names nodes '/block/Op'; no double slash in 'grad/…'.
    const scope = `grad/${(node.name || `${node.opType}_${k}`).replace(/^\/+/, '')}`;
    const b = root.scoped(scope);
    const dy = node.output.map((o) => (useful(o) ? total(o, b) : null));
    if (dy.every((d) => d === null)) continue;
    const rule = getGradientRule(node.opType, node.domain ?? '');
    if (!rule) throw missingRule(node);
    const ctx = makeContext(node, b, graph, dy, needs);
    let grads: readonly (string | null | undefined)[];
    try {
      grads = rule(ctx);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message.includes(describeNode(node))) throw error;
      throw new Error(`gradient of node ${describeNode(node)}: ${message}`, { cause: error });
    }
    node.input.forEach((name, i) => {
      const g = grads[i];
      if (needs[i] && g) contribute(name, g);
    });
  }

  const result: Record<string, string> = {};
  const finish = root.scoped('grad/out');
  for (const w of options.wrt) {
    const outName = gradientName(w);
    if (graph.has(outName) || Object.values(result).includes(outName)) {
      throw new Error(`the gradient output name '${outName}' is already a tensor of the graph`);
    }
    let g = total(w, finish);
    if (g === null) {
      if ((options.onDisconnected ?? 'error') === 'error') {
        throw new Error(
          `wrt: '${w}' does not influence the loss '${loss}' through differentiable operations ` +
            `(pass onDisconnected: 'zeros' for a zero gradient)`,
        );
      }
      g = finish.zerosLike(w);
    }
    finish.op('Identity', [g], undefined, { outputs: [outName], name: `${outName}/identity` });
    result[w] = outName;
  }
  return { gradients: result, gradientOf: accumulated };
}

function makeContext(
  node: NodeProto,
  b: GraphBuilder,
  graph: Graph,
  dy: readonly (string | null)[],
  needs: readonly boolean[],
): GradientContext {
  return {
    node,
    b,
    graph,
    opset: graph.opsetOf(node.domain ?? ''),
    dy,
    needs,
    input: (i) => node.input[i] ?? '',
    output: (i) => node.output[i],
    dyOrZeros: (i) => dy[i] ?? b.zerosLike(node.output[i]),
    error: (message) => new Error(`gradient of node ${describeNode(node)}: ${message}`),
  };
}

function missingRule(node: NodeProto): Error {
  const domain = node.domain && node.domain !== 'ai.onnx' ? node.domain : '';
  const hint = domain
    ? ` Operators of domain '${domain}' (ONNX Runtime fusions such as com.microsoft) cannot be differentiated: ` +
      'use the raw export, without ORT graph optimizations.'
    : ' Add a rule in src/autodiff/rules (see its README.md).';
  return new Error(
    `no gradient rule for operator '${node.opType}'${domain ? ` of domain '${domain}'` : ''} ` +
      `(node ${describeNode(node)}, which lies between the wrt tensors and the loss).${hint}`,
  );
}
