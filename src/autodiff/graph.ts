/**
 * A small mutable graph IR over the ONNX proto, and the GraphBuilder that gradient rules emit nodes with.
 *
 * Nodes stay `onnx.NodeProto` objects (copied from the source model, so the caller's model is never mutated);
 * initializers are shared by reference, since nothing here rewrites weight values. Type/shape/constant
 * information comes from ./infer.ts, merged with the model's value_info, and is cached per tensor name: nodes
 * added through {@link Graph.addNode} are inferred on the spot, other mutations must call
 * {@link Graph.invalidate}.
 */
import { makeAttributes, type Attrs } from './attrs.js';
import {
  broadcastShapes,
  inferNode,
  isStatic,
  MAX_CONST_ELEMENTS,
  shapeFromDims,
  type ConstValue,
  type Shape,
  type TensorInfo,
} from './infer.js';
import {
  DataType,
  dataTypeName,
  hasField,
  isFloatType,
  makeTensor,
  onnx,
  tensorDims,
  isExternal,
  tensorSize,
  tensorToNumbers,
  toNumber,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type TensorValues,
  type ValueInfoProto,
} from './onnx_io.js';

export type { Dim, Shape, TensorInfo, ConstValue } from './infer.js';

/** The first opset in which the builder may emit each operator (ONNX Runtime 1.30 implements all of these). */
const MIN_OPSET: Record<string, number> = {
  Range: 11,
  Einsum: 12,
  CastLike: 15,
  Where: 9,
  Expand: 8,
  ConstantOfShape: 9,
  NonZero: 9,
  ScatterElements: 11,
  ScatterND: 11,
  GatherElements: 11,
  Less: 7,
  Greater: 7,
  Equal: 7,
  Erf: 9,
  Sign: 9,
  OneHot: 9,
  CumSum: 11,
  LayerNormalization: 17,
  GroupNormalization: 18,
  Gelu: 20,
  Mod: 10,
  Trilu: 14,
};

export class Graph {
  name: string;
  nodes: NodeProto[];
  initializers: Map<string, TensorProto>;
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  valueInfo: Map<string, ValueInfoProto>;
  private readonly model: ModelProto;
  private cache = new Map<string, TensorInfo>();
  private inferred = false;
  private producerIndex: Map<string, NodeProto> | null = null;
  private taken: Set<string> | null = null;

  private constructor(model: ModelProto) {
    const g = model.graph;
    if (!g) throw new Error('the model has no graph');
    this.model = model;
    this.name = g.name ?? 'graph';
    this.nodes = (g.node ?? []).map((n) => copyNode(n as NodeProto));
    this.initializers = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t as TensorProto]));
    this.inputs = (g.input ?? []).map((v) => v as ValueInfoProto);
    this.outputs = (g.output ?? []).map((v) => v as ValueInfoProto);
    this.valueInfo = new Map((g.valueInfo ?? []).map((v) => [v.name ?? '', v as ValueInfoProto]));
    if ((g.sparseInitializer ?? []).length > 0) {
      throw new Error('sparse initializers are not supported; densify the model first');
    }
  }

  /** A graph over `model` (nodes copied, tensors shared): editing it leaves `model` as it was. */
  static fromModel(model: ModelProto): Graph {
    return new Graph(model);
  }

  /** The version of the default ('' / 'ai.onnx') operator set. */
  get opset(): number {
    return this.opsetOf('');
  }

  get irVersion(): number {
    return toNumber(this.model.irVersion);
  }

  opsetOf(domain: string): number {
    const entry = (this.model.opsetImport ?? []).find(
      (o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'),
    );
    return entry ? toNumber(entry.version) : 0;
  }

  /** A new ModelProto with this graph; the model-level fields (IR version, opsets, functions, metadata) are kept. */
  toModel(): ModelProto {
    const m = this.model;
    const graph = onnx.GraphProto.create({
      name: this.name,
      node: this.nodes,
      initializer: [...this.initializers.values()],
      input: this.inputs,
      output: this.outputs,
      valueInfo: [...this.valueInfo.values()],
    });
    const copy = onnx.ModelProto.create({
      irVersion: m.irVersion,
      opsetImport: m.opsetImport,
      producerName: m.producerName || 'editkit',
      producerVersion: m.producerVersion,
      domain: m.domain,
      modelVersion: m.modelVersion,
      docString: m.docString,
      graph,
      metadataProps: m.metadataProps,
      functions: m.functions,
    });
    return copy;
  }

  // -------------------------------------------------------------------------------------------------------
  // Structure
  // -------------------------------------------------------------------------------------------------------

  isInput(name: string): boolean {
    return this.inputs.some((v) => v.name === name);
  }

  isInitializer(name: string): boolean {
    return this.initializers.has(name);
  }

  isOutput(name: string): boolean {
    return this.outputs.some((v) => v.name === name);
  }

  /** The node producing `name`, or undefined for graph inputs, initializers and unknown names. */
  producer(name: string): NodeProto | undefined {
    if (!this.producerIndex) {
      this.producerIndex = new Map();
      for (const n of this.nodes) for (const o of n.output) if (o) this.producerIndex.set(o, n);
    }
    return this.producerIndex.get(name);
  }

  consumers(name: string): NodeProto[] {
    return this.nodes.filter((n) => n.input.includes(name) || implicitInputs(n).has(name));
  }

  /** Whether `name` is a tensor of this graph (input, initializer or node output). */
  has(name: string): boolean {
    return this.isInput(name) || this.isInitializer(name) || this.producer(name) !== undefined;
  }

  /** A name not yet used by any tensor or node, derived from `base`. */
  uniqueName(base: string): string {
    const taken = this.takenNames();
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  }

  /** Reserve a name chosen elsewhere (e.g. `grad_x`), so uniqueName never hands it out. */
  reserve(name: string): void {
    this.takenNames().add(name);
  }

  /** One set for node and tensor names: a fresh name is free in both, so a node and its output can share it. */
  private takenNames(): Set<string> {
    if (!this.taken) {
      const taken = new Set<string>();
      for (const v of this.inputs) taken.add(v.name);
      for (const v of this.outputs) taken.add(v.name);
      for (const k of this.initializers.keys()) taken.add(k);
      for (const k of this.valueInfo.keys()) taken.add(k);
      for (const n of this.nodes) {
        if (n.name) taken.add(n.name);
        for (const o of n.output) taken.add(o);
        for (const i of n.input) taken.add(i);
      }
      this.taken = taken;
    }
    return this.taken;
  }

  addNode(node: NodeProto): NodeProto {
    this.nodes.push(node);
    if (this.producerIndex) for (const o of node.output) if (o) this.producerIndex.set(o, node);
    if (this.taken) {
      if (node.name) this.taken.add(node.name);
      for (const o of node.output) this.taken.add(o);
    }
    if (this.inferred) this.inferOne(node);
    return node;
  }

  addInitializer(tensor: TensorProto): void {
    if (this.has(tensor.name) && !this.isInput(tensor.name))
      throw new Error(`tensor '${tensor.name}' already exists`);
    this.initializers.set(tensor.name, tensor);
    this.taken?.add(tensor.name);
    if (this.inferred) this.cache.set(tensor.name, this.baseInfo(tensor.name)!);
  }

  addInput(valueInfo: ValueInfoProto): void {
    if (this.isInput(valueInfo.name)) throw new Error(`graph input '${valueInfo.name}' already exists`);
    this.inputs.push(valueInfo);
    this.taken?.add(valueInfo.name);
    if (this.inferred) this.cache.set(valueInfo.name, this.baseInfo(valueInfo.name)!);
  }

  /** Forget cached inference and indices after structural edits other than additions. */
  invalidate(): void {
    this.cache.clear();
    this.inferred = false;
    this.producerIndex = null;
    this.taken = null;
  }

  /**
   * Sort nodes topologically, keeping the existing order where it already is one. Throws on cycles and on
   * inputs that nothing defines.
   */
  topologicalSort(): void {
    const defined = new Set<string>(['']);
    for (const v of this.inputs) defined.add(v.name);
    for (const k of this.initializers.keys()) defined.add(k);
    const producer = new Map<string, number>();
    this.nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
    const state = new Uint8Array(this.nodes.length); // 0 new, 1 on stack, 2 done
    const order: NodeProto[] = [];
    const deps = (i: number): number[] => {
      const n = this.nodes[i];
      const out: number[] = [];
      for (const name of [...n.input, ...implicitInputs(n)]) {
        if (defined.has(name)) continue;
        const p = producer.get(name);
        if (p === undefined) {
          throw new Error(
            `node '${n.name || n.opType}' (${n.opType}) reads '${name}', which no node, input or initializer defines`,
          );
        }
        out.push(p);
      }
      return out;
    };
    for (let root = 0; root < this.nodes.length; root++) {
      if (state[root]) continue;
      const stack: [number, number[], number][] = [[root, deps(root), 0]];
      state[root] = 1;
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [i, ds] = top;
        if (top[2] < ds.length) {
          const d = ds[top[2]++];
          if (state[d] === 1)
            throw new Error(
              `the graph has a cycle through node '${this.nodes[d].name || this.nodes[d].opType}'`,
            );
          if (state[d] === 0) {
            state[d] = 1;
            stack.push([d, deps(d), 0]);
          }
        } else {
          state[i] = 2;
          order.push(this.nodes[i]);
          stack.pop();
        }
      }
    }
    this.nodes = order;
  }

  // -------------------------------------------------------------------------------------------------------
  // Types, shapes and constants
  // -------------------------------------------------------------------------------------------------------

  info(name: string): TensorInfo {
    if (name === '') return { shape: null };
    if (!this.inferred) this.inferAll();
    return this.cache.get(name) ?? { shape: null };
  }

  elemType(name: string): DataType | undefined {
    return this.info(name).type;
  }

  shape(name: string): Shape {
    return this.info(name).shape;
  }

  rank(name: string): number | undefined {
    return this.shape(name)?.length;
  }

  /** A statically known value: a small initializer, a Constant, or constant-folded shape arithmetic. */
  constValue(name: string): ConstValue | undefined {
    const init = this.initializers.get(name);
    if (init && !this.isInput(name)) {
      if (tensorSize(init) > MAX_CONST_ELEMENTS) return undefined;
      return { type: init.dataType, dims: tensorDims(init), values: tensorToNumbers(init) };
    }
    return this.info(name).value;
  }

  /** Whether gradients can flow through this tensor (float types; unknown types count as float). */
  isDifferentiable(name: string): boolean {
    const t = this.elemType(name);
    return t === undefined || isFloatType(t);
  }

  /** ValueInfo for a tensor from what inference knows (unknown dims left unset). */
  makeValueInfo(name: string, fallbackType?: DataType): ValueInfoProto {
    const info = this.info(name);
    const type = info.type ?? fallbackType;
    if (type === undefined) throw new Error(`cannot tell the element type of '${name}'`);
    return makeValueInfo(name, type, info.shape);
  }

  private baseInfo(name: string): TensorInfo | undefined {
    const input = this.inputs.find((v) => v.name === name);
    if (input) {
      const t = input.type?.tensorType;
      const info: TensorInfo = {
        type: t?.elemType ?? undefined,
        shape: t?.shape ? shapeFromDims(t.shape.dim) : null,
      };
      if (t && !hasField(t, 'shape')) info.shape = null;
      return info;
    }
    const init = this.initializers.get(name);
    if (init) {
      const dims = tensorDims(init);
      const info: TensorInfo = { type: init.dataType, shape: dims };
      // A weight left in its external file (loadModel with externalData: false) has no value here; shapes and
      // types are all that inference needs of weights.
      if (tensorSize(init) <= MAX_CONST_ELEMENTS && init.dataType !== DataType.STRING && !isExternal(init)) {
        info.value = { type: init.dataType, dims, values: tensorToNumbers(init) };
      }
      return info;
    }
    return undefined;
  }

  private mergeValueInfo(name: string, info: TensorInfo): TensorInfo {
    const vi = this.valueInfo.get(name) ?? this.outputs.find((v) => v.name === name);
    const t = vi?.type?.tensorType;
    if (!t) return info;
    const type = info.type ?? t.elemType ?? undefined;
    let shape = info.shape;
    if (t.shape && hasField(t, 'shape')) {
      const declared = shapeFromDims(t.shape.dim);
      if (shape === null) shape = declared;
      else if (shape.length === declared.length) shape = shape.map((d, i) => (d === null ? declared[i] : d));
    }
    return { ...info, type, shape };
  }

  private inferOne(node: NodeProto): void {
    const ctx = { opset: this.opsetOf(node.domain ?? ''), info: (n: string) => this.info(n) };
    let outs: TensorInfo[];
    try {
      outs = inferNode(node, ctx);
    } catch {
      outs = node.output.map(() => ({ shape: null }));
    }
    node.output.forEach((o, i) => {
      if (o) this.cache.set(o, this.mergeValueInfo(o, outs[i] ?? { shape: null }));
    });
  }

  private inferAll(): void {
    this.inferred = true;
    this.cache.clear();
    for (const v of this.inputs) this.cache.set(v.name, this.baseInfo(v.name)!);
    for (const k of this.initializers.keys()) if (!this.cache.has(k)) this.cache.set(k, this.baseInfo(k)!);
    for (const n of this.nodes) this.inferOne(n);
  }
}

export function makeValueInfo(name: string, type: DataType, shape: Shape): ValueInfoProto {
  const tensorType: { elemType: number; shape?: { dim: { dimValue?: number; dimParam?: string }[] } } = {
    elemType: type,
  };
  if (shape !== null) {
    tensorType.shape = {
      dim: shape.map((d) =>
        typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {},
      ),
    };
  }
  return onnx.ValueInfoProto.create({ name, type: { tensorType } });
}

export function copyNode(n: NodeProto): NodeProto {
  return onnx.NodeProto.create({
    name: n.name,
    opType: n.opType,
    domain: n.domain,
    input: [...(n.input ?? [])],
    output: [...(n.output ?? [])],
    attribute: n.attribute,
    docString: n.docString,
  });
}

/** Outer-scope names that a node's subgraphs (If/Loop/Scan bodies) read. */
export function implicitInputs(node: NodeProto): Set<string> {
  const out = new Set<string>();
  for (const attr of node.attribute ?? []) {
    for (const g of [attr.g, ...(attr.graphs ?? [])]) {
      if (!g) continue;
      const defined = new Set<string>();
      for (const v of g.input ?? []) defined.add(v.name ?? '');
      for (const t of g.initializer ?? []) defined.add(t.name ?? '');
      for (const n of g.node ?? []) for (const o of n.output ?? []) defined.add(o);
      for (const n of g.node ?? []) {
        for (const i of n.input ?? []) if (i && !defined.has(i)) out.add(i);
        for (const i of implicitInputs(n as NodeProto)) if (!defined.has(i)) out.add(i);
      }
      for (const o of g.output ?? []) if (o.name && !defined.has(o.name)) out.add(o.name);
    }
  }
  return out;
}

// -----------------------------------------------------------------------------------------------------------
// GraphBuilder
// -----------------------------------------------------------------------------------------------------------

export interface OpOptions {
  domain?: string;
  /** Base for the node's name (made unique). */
  name?: string;
  /** Exact output names (must be unused); default: fresh names. */
  outputs?: readonly string[];
}

/** Axes or other int64 vectors given either statically or as the name of an int64 tensor. */
export type IntsOrTensor = readonly number[] | string;

/**
 * Emits nodes into a Graph. Gradient rules get one scoped to their forward node, so emitted names read
 * `<scope>/<OpType>` (made unique). The helpers pick the form each operator has in the graph's opset (axes as
 * attributes or inputs, Slice/Pad/Clip inputs), and constants become initializers, shared when identical.
 */
export class GraphBuilder {
  private readonly constants: Map<string, string>;

  constructor(
    readonly graph: Graph,
    readonly scope = '',
    constants?: Map<string, string>,
  ) {
    this.constants = constants ?? new Map();
  }

  /** A builder writing to the same graph under another name scope (constants stay shared). */
  scoped(scope: string): GraphBuilder {
    return new GraphBuilder(this.graph, scope, this.constants);
  }

  get opset(): number {
    return this.graph.opset;
  }

  private fresh(base: string): string {
    return this.graph.uniqueName(this.scope ? `${this.scope}/${base}` : base);
  }

  /** Emit one node with `outputs` results (fresh names unless given); returns the output names. */
  opN(
    opType: string,
    inputs: readonly string[],
    outputs: number,
    attrs?: Attrs,
    options: OpOptions = {},
  ): string[] {
    const domain = options.domain ?? '';
    if (domain === '') {
      const min = MIN_OPSET[opType];
      if (min !== undefined && this.opset < min) {
        throw new Error(
          `the gradient needs ${opType}, which opset ${this.opset} does not have (it needs opset ${min}+)`,
        );
      }
    }
    for (const i of inputs) {
      if (i !== '' && !this.graph.has(i))
        throw new Error(`internal: ${opType} reads '${i}', which is not in the graph`);
    }
    const name = this.fresh(options.name ?? opType);
    const outs = options.outputs
      ? [...options.outputs]
      : Array.from({ length: outputs }, (_, k) => (k === 0 ? name : this.fresh(`${name}:${k}`)));
    if (options.outputs) for (const o of outs) this.graph.reserve(o);
    const node = onnx.NodeProto.create({
      name,
      opType,
      domain,
      input: [...inputs],
      output: outs,
      attribute: makeAttributes(attrs),
    });
    this.graph.addNode(node);
    return outs;
  }

  /** Emit one single-output node; returns the output's name. */
  op(opType: string, inputs: readonly string[], attrs?: Attrs, options?: OpOptions): string {
    return this.opN(opType, inputs, 1, attrs, options)[0];
  }

  /** The element type of a tensor; throws when inference cannot tell (constants need it). */
  typeOf(name: string): DataType {
    const t = this.graph.elemType(name);
    if (t === undefined) throw new Error(`cannot tell the element type of '${name}' (add value_info for it)`);
    return t;
  }

  // ---- constants ----

  /** A constant initializer (deduplicated when small). */
  constant(type: DataType, dims: readonly number[], values: TensorValues, base = 'const'): string {
    const small = values.length <= 16;
    const key = small
      ? `${type}|${dims.join(',')}|${Array.from(values as ArrayLike<number>, String).join(',')}`
      : '';
    if (small && this.constants.has(key)) return this.constants.get(key)!;
    const name = this.graph.uniqueName(this.scope ? `${this.scope}/${base}` : base);
    this.graph.addInitializer(makeTensor(name, type, dims, values));
    if (small) this.constants.set(key, name);
    return name;
  }

  /** A rank-0 constant with the element type of `like`. */
  scalarLike(value: number, like: string): string {
    return this.constant(this.typeOf(like), [], [value], 'scalar');
  }

  int64s(values: readonly number[]): string {
    return this.constant(DataType.INT64, [values.length], values, 'ints');
  }

  int64Scalar(value: number): string {
    return this.constant(DataType.INT64, [], [value], 'int');
  }

  private intsInput(v: IntsOrTensor): string {
    return typeof v === 'string' ? v : this.int64s(v);
  }

  // ---- arithmetic ----

  add(a: string, b: string): string {
    return this.op('Add', [a, b]);
  }
  sub(a: string, b: string): string {
    return this.op('Sub', [a, b]);
  }
  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }
  div(a: string, b: string): string {
    return this.op('Div', [a, b]);
  }
  neg(a: string): string {
    return this.op('Neg', [a]);
  }
  /** x · value with a constant of x's type. */
  scale(x: string, value: number): string {
    if (value === 1) return x;
    if (value === -1) return this.neg(x);
    return this.mul(x, this.scalarLike(value, x));
  }

  /** The sum of several same-shape tensors (Add for two, Sum for more). */
  sum(terms: readonly string[]): string {
    if (terms.length === 0) throw new Error('internal: empty sum');
    if (terms.length === 1) return terms[0];
    if (terms.length === 2) return this.add(terms[0], terms[1]);
    return this.op('Sum', terms);
  }

  cast(x: string, to: DataType): string {
    if (this.graph.elemType(x) === to) return x;
    return this.op('Cast', [x], { to });
  }

  // ---- shapes ----

  shapeOf(x: string, start?: number, end?: number): string {
    const value = this.graph.shape(x);
    if (value && isStatic(value)) {
      const s = value.slice(start ?? 0, end ?? value.length);
      return this.int64s(s);
    }
    if (start === undefined && end === undefined) return this.op('Shape', [x]);
    if (this.opset >= 15) return this.op('Shape', [x], { start, end });
    const full = this.op('Shape', [x]);
    return this.slice(full, [start ?? 0], [end ?? 2 ** 62], [0]);
  }

  /** Dimension `axis` of x as a 1-element int64 vector. */
  dim(x: string, axis: number): string {
    const r = this.graph.rank(x);
    const a = axis < 0 && r !== undefined ? axis + r : axis;
    const s = this.graph.shape(x);
    if (s && typeof s[a] === 'number') return this.int64s([s[a] as number]);
    if (a < 0) return this.slice(this.op('Shape', [x]), [a], [a === -1 ? 2 ** 62 : a + 1], [0]);
    return this.shapeOf(x, a, a + 1);
  }

  reshape(x: string, shape: IntsOrTensor): string {
    return this.op('Reshape', [x, this.intsInput(shape)]);
  }

  /** Reshape x to the (runtime) shape of `like`, skipped when both are statically equal. */
  reshapeLike(x: string, like: string): string {
    const a = this.graph.shape(x);
    const b = this.graph.shape(like);
    if (a && b && a.length === b.length && a.every((d, i) => d !== null && d === b[i])) return x;
    return this.reshape(x, this.shapeOf(like));
  }

  transpose(x: string, perm: readonly number[]): string {
    if (perm.every((p, i) => p === i)) return x;
    return this.op('Transpose', [x], { perm });
  }

  concat(inputs: readonly string[], axis: number): string {
    if (inputs.length === 1) return inputs[0];
    return this.op('Concat', inputs, { axis });
  }

  unsqueeze(x: string, axes: IntsOrTensor): string {
    if (this.opset >= 13) return this.op('Unsqueeze', [x, this.intsInput(axes)]);
    if (typeof axes === 'string')
      throw new Error(`Unsqueeze with runtime axes needs opset 13+ (model has ${this.opset})`);
    return this.op('Unsqueeze', [x], { axes });
  }

  squeeze(x: string, axes: IntsOrTensor): string {
    if (this.opset >= 13) return this.op('Squeeze', [x, this.intsInput(axes)]);
    if (typeof axes === 'string')
      throw new Error(`Squeeze with runtime axes needs opset 13+ (model has ${this.opset})`);
    return this.op('Squeeze', [x], { axes });
  }

  /** Any Reduce* operator, with axes as attribute or input as the opset wants; `undefined` axes reduce all. */
  reduce(
    opType: string,
    x: string,
    axes: IntsOrTensor | undefined,
    keepdims: boolean,
    noopWithEmptyAxes = false,
  ): string {
    const inputForm = opType === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    const attrs: Record<string, number | readonly number[]> = { keepdims: keepdims ? 1 : 0 };
    if (inputForm) {
      if (noopWithEmptyAxes) attrs.noop_with_empty_axes = 1;
      return this.op(opType, axes === undefined ? [x] : [x, this.intsInput(axes)], attrs);
    }
    if (typeof axes === 'string') {
      throw new Error(
        `${opType} with runtime axes needs opset ${opType === 'ReduceSum' ? 13 : 18}+ (model has ${this.opset})`,
      );
    }
    if (axes !== undefined) attrs.axes = axes;
    return this.op(opType, [x], attrs);
  }

  reduceSum(x: string, axes: IntsOrTensor | undefined, keepdims: boolean, noopWithEmptyAxes = false): string {
    if (Array.isArray(axes) && axes.length === 0) return x;
    return this.reduce('ReduceSum', x, axes, keepdims, noopWithEmptyAxes);
  }

  reduceMean(x: string, axes: IntsOrTensor | undefined, keepdims: boolean): string {
    if (Array.isArray(axes) && axes.length === 0) return x;
    return this.reduce('ReduceMean', x, axes, keepdims);
  }

  slice(
    x: string,
    starts: IntsOrTensor,
    ends: IntsOrTensor,
    axes?: IntsOrTensor,
    steps?: IntsOrTensor,
  ): string {
    if (this.opset < 10) {
      if ([starts, ends, axes, steps].some((v) => typeof v === 'string') || steps) {
        throw new Error(`Slice with runtime bounds or steps needs opset 10+ (model has ${this.opset})`);
      }
      return this.op('Slice', [x], {
        starts: starts as number[],
        ends: ends as number[],
        axes: axes as number[] | undefined,
      });
    }
    const inputs = [x, this.intsInput(starts), this.intsInput(ends)];
    if (axes !== undefined || steps !== undefined)
      inputs.push(axes === undefined ? '' : this.intsInput(axes));
    if (steps !== undefined) inputs.push(this.intsInput(steps));
    return this.op('Slice', inputs);
  }

  split(x: string, axis: number, sizes: IntsOrTensor): string[] {
    const n = typeof sizes === 'string' ? undefined : sizes.length;
    if (this.opset >= 13) {
      if (n === undefined) throw new Error('internal: split with runtime sizes needs an output count');
      return this.opN('Split', [x, this.intsInput(sizes)], n, { axis });
    }
    if (typeof sizes === 'string')
      throw new Error(`Split with runtime sizes needs opset 13+ (model has ${this.opset})`);
    return this.opN('Split', [x], sizes.length, { axis, split: sizes });
  }

  /** Constant-mode Pad with zeros; pads as [begin..., end...] over all axes. */
  pad(x: string, pads: IntsOrTensor): string {
    if (Array.isArray(pads) && pads.every((p) => p === 0)) return x;
    if (this.opset >= 11) return this.op('Pad', [x, this.intsInput(pads)]);
    if (typeof pads === 'string')
      throw new Error(`Pad with runtime pads needs opset 11+ (model has ${this.opset})`);
    return this.op('Pad', [x], { pads, mode: 'constant' });
  }

  /** Tensor of `shape` (an int64 shape tensor) filled with `value` of `type`. */
  constantOfShape(shape: string, type: DataType, value: number): string {
    const v = this.graph.constValue(shape);
    if (v && v.values.reduce((a, b) => a * b, 1) <= 16) {
      const size = v.values.reduce((a, b) => a * b, 1);
      return this.constant(type, v.values, new Array(size).fill(value), 'filled');
    }
    return this.op('ConstantOfShape', [shape], { value: makeTensor('value', type, [1], [value]) });
  }

  zerosLike(x: string): string {
    return this.constantOfShape(this.shapeOf(x), this.typeOf(x), 0);
  }

  onesLike(x: string): string {
    return this.constantOfShape(this.shapeOf(x), this.typeOf(x), 1);
  }

  /** Broadcast x to the runtime shape of `like` (skipped when statically equal). */
  expandLike(x: string, like: string): string {
    const a = this.graph.shape(x);
    const b = this.graph.shape(like);
    if (a && b && a.length === b.length && a.every((d, i) => d !== null && d === b[i])) return x;
    return this.op('Expand', [x, this.shapeOf(like)]);
  }

  /**
   * Sum a gradient `g` (the shape of a broadcast result) back to the shape of the operand `like`, the adjoint of
   * numpy broadcasting. Static shapes give a plain ReduceSum over known axes; where a dim may or may not have
   * been broadcast (unknown sizes), the axes come at runtime from Shape/Equal/NonZero (opset 13+).
   */
  reduceToShape(g: string, like: string): string {
    const gs = this.graph.shape(g);
    const ts = this.graph.shape(like);
    if (gs && ts) {
      if (ts.length > gs.length)
        throw new Error(`internal: cannot reduce '${g}' ${gs.length}-D to the ${ts.length}-D '${like}'`);
      const lead = gs.length - ts.length;
      const keep: number[] = [];
      let ambiguous = false;
      ts.forEach((td, i) => {
        const gd = gs[i + lead];
        if (td === 1) {
          if (gd !== 1) keep.push(i);
        } else if (typeof td === 'number') {
          // a static non-1 operand dim was never broadcast
        } else if (td !== null && td === gd) {
          // same symbol: same size
        } else if (gd === 1) {
          // the result dim is 1, so the operand's is 1 too
        } else ambiguous = true;
      });
      const leadAxes = Array.from({ length: lead }, (_, i) => i);
      if (!ambiguous) {
        if (keep.length === 0) return lead ? this.reduceSum(g, leadAxes, false) : g;
        if (lead === 0) return this.reduceSum(g, keep, true);
        const all = this.reduceSum(g, [...leadAxes, ...keep.map((k) => k + lead)], false);
        return this.unsqueeze(all, keep);
      }
      this.requireDynamicReduce();
      const g1 = lead ? this.reduceSum(g, leadAxes, false) : g;
      return this.reduceWhereOne(g1, like);
    }
    this.requireDynamicReduce();
    // Unknown ranks: leading axes = range(rank(g) - rank(like)), found at runtime too.
    const rg = this.op('Size', [this.op('Shape', [g])]);
    const rt = this.op('Size', [this.op('Shape', [like])]);
    const lead = this.op('Range', [this.int64Scalar(0), this.sub(rg, rt), this.int64Scalar(1)]);
    const g1 = this.reduceSum(g, lead, false, true);
    return this.reduceWhereOne(g1, like);
  }

  private requireDynamicReduce(): void {
    if (this.opset < 13) {
      throw new Error(
        `reducing a broadcast gradient over dims of unknown size needs opset 13+ (ReduceSum with axes as input); ` +
          `the model has opset ${this.opset}: give the graph inputs static shapes`,
      );
    }
  }

  private reduceWhereOne(g: string, like: string): string {
    const ones = this.op('Equal', [this.op('Shape', [like]), this.int64s([1])]);
    const axes = this.reshape(this.op('NonZero', [ones]), [-1]);
    return this.reduceSum(g, axes, true, true);
  }
}

/** Shape helpers shared by rules. */
export function staticDims(shape: Shape): number[] | undefined {
  return shape && isStatic(shape) ? shape : undefined;
}

export function broadcastShapeOf(graph: Graph, names: readonly string[]): Shape {
  return broadcastShapes(names.map((n) => graph.shape(n)));
}

export function describeNode(node: NodeProto): string {
  return node.name ? `'${node.name}' (${node.opType})` : `${node.opType} → '${node.output[0]}'`;
}

export function typeName(type: DataType | undefined): string {
  return type === undefined ? 'unknown' : dataTypeName(type);
}
