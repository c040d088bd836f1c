/**
 * Test helpers for the autodiff: a tiny model builder (onnx-proto straight from TypeScript), ONNX Runtime
 * sessions from buffers, and a gradient check against central finite differences.
 *
 * Gradient check: the model's outputs y_k are projected to a scalar L = Σ_k Σ y_k ⊙ R_k with fixed random R_k
 * (so every output element matters, with different weights), the gradient model is run once, and each checked
 * element of each wrt tensor is compared with (L(w + h·e_i) − L(w − h·e_i)) / 2h from the forward model.
 * Error = max |analytic − numeric| / max(max |numeric|, 1e-6), per wrt tensor.
 *
 * float64 runs wherever ONNX Runtime 1.30's CPU provider has double kernels for every op of the forward and
 * backward graphs (checked: Add/Sub/Mul/Div/Pow/MatMul/Gemm/Einsum/Softmax/LogSoftmax/LayerNormalization/
 * GroupNormalization/ReduceX/Sqrt/Exp/Log/Tanh/Sigmoid/Relu/Concat/Slice/Pad/Gather/Where…); Conv,
 * ConvTranspose, InstanceNormalization, Resize, Erf and Softplus have float kernels only, so those tests run in
 * float32 with a larger step and tolerance.
 */
import ort from 'onnxruntime-node';
import {
  buildGradient,
  customLoss,
  extractSubgraph,
  type GradientOptions,
} from '../../src/autodiff/index.js';
import { Graph, makeValueInfo, type Dim } from '../../src/autodiff/graph.js';
import { makeAttributes, type Attrs } from '../../src/autodiff/attrs.js';
import {
  DataType,
  makeTensor,
  onnx,
  serializeModel,
  tensorToFloat64,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  graphOf,
} from '../../src/autodiff/onnx_io.js';
import { Generator } from '../../src/runtime/random.js';

// Rules' tests print ORT's "removing unused initializer" notices otherwise.
ort.env.logLevel = 'error';

export type FloatType = 'float32' | 'float64';

export function dataType(t: FloatType): number {
  return t === 'float64' ? DataType.DOUBLE : DataType.FLOAT;
}

/** Builds small ONNX models node by node. */
export class TinyModel {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  readonly inputs: ReturnType<typeof makeValueInfo>[] = [];
  readonly outputs: string[] = [];
  private counter = 0;

  constructor(readonly options: { opset?: number; dtype?: FloatType; irVersion?: number } = {}) {}

  get type(): number {
    return dataType(this.options.dtype ?? 'float64');
  }

  input(name: string, shape: readonly Dim[], type = this.type): string {
    this.inputs.push(makeValueInfo(name, type, [...shape]));
    return name;
  }

  /** An initializer with the model's float type unless `type` is given. */
  init(name: string, dims: readonly number[], values: ArrayLike<number>, type = this.type): string {
    this.inits.push(makeTensor(name, type, dims, values));
    return name;
  }

  /** An initializer with random normal values. */
  randInit(name: string, dims: readonly number[], seed: number, scale = 1): string {
    return this.init(name, dims, randn(dims, seed, scale));
  }

  ints(name: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.init(name, dims, values, DataType.INT64);
  }

  /** Adds a node; returns its (first) output name. */
  node(
    opType: string,
    inputs: readonly string[],
    attrs?: Attrs,
    outputs?: number | readonly string[],
  ): string {
    const outs =
      typeof outputs === 'object'
        ? [...outputs]
        : Array.from({ length: outputs ?? 1 }, () => `t${this.counter++}`);
    this.nodes.push(
      onnx.NodeProto.create({
        name: `n${this.nodes.length}_${opType}`,
        opType,
        input: [...inputs],
        output: outs,
        attribute: makeAttributes(attrs),
      }) as NodeProto,
    );
    return outs[0];
  }

  output(...names: string[]): this {
    this.outputs.push(...names);
    return this;
  }

  model(): ModelProto {
    const base = onnx.ModelProto.create({
      irVersion: this.options.irVersion ?? 8,
      opsetImport: [{ domain: '', version: this.options.opset ?? 17 }],
      producerName: 'editkit-tests',
      graph: onnx.GraphProto.create({
        name: 'tiny',
        node: this.nodes,
        initializer: this.inits,
        input: this.inputs,
        output: [],
      }),
    }) as ModelProto;
    const g = Graph.fromModel(base);
    graphOf(base).output = this.outputs.map((o) => g.makeValueInfo(o));
    return base;
  }
}

export function randn(dims: readonly number[], seed: number, scale = 1): Float64Array {
  const gen = new Generator(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  return Float64Array.from({ length: n }, () => gen.normal() * scale);
}

export function tensor(type: FloatType, dims: readonly number[], values: ArrayLike<number>): ort.Tensor {
  return type === 'float64'
    ? new ort.Tensor('float64', Float64Array.from(values), [...dims])
    : new ort.Tensor('float32', Float32Array.from(values), [...dims]);
}

export function randTensor(type: FloatType, dims: readonly number[], seed: number, scale = 1): ort.Tensor {
  return tensor(type, dims, randn(dims, seed, scale));
}

export function int64Tensor(dims: readonly number[], values: readonly number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (v) => BigInt(v)),
    [...dims],
  );
}

export async function createSession(model: ModelProto): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(serializeModel(model), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
  });
}

export async function runModel(
  model: ModelProto,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  const session = await createSession(model);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

export function values(t: ort.Tensor): number[] {
  return Array.from(t.data as ArrayLike<number>, Number);
}

/** Make the named graph inputs (default: all) dynamic: every dim becomes a distinct symbol, only ranks stay known. */
export function makeDynamic(model: ModelProto, names?: readonly string[]): ModelProto {
  const copy = onnx.ModelProto.decode(serializeModel(model)) as ModelProto;
  for (const input of graphOf(copy).input) {
    if (names && !names.includes(input.name)) continue;
    const dims = input.type?.tensorType?.shape?.dim ?? [];
    dims.forEach((d, i) => {
      d.dimValue = null;
      d.dimParam = `${input.name}_d${i}`;
    });
  }
  for (const o of graphOf(copy).output) {
    for (const d of o.type?.tensorType?.shape?.dim ?? []) {
      d.dimValue = null;
      d.dimParam = null;
    }
  }
  return copy;
}

export interface GradcheckOptions {
  wrt: readonly string[];
  /** Values of the graph inputs (wrt inputs included); wrt initializers are perturbed through promotion. */
  feeds: Record<string, ort.Tensor>;
  /** Outputs to project into the loss (default: all graph outputs). */
  outputs?: readonly string[];
  /** Finite-difference step (default 1e-6 for float64 models, 1e-2 for float32). */
  eps?: number;
  /** Elements checked per wrt tensor (a seeded random subset when larger; default 48). */
  maxChecks?: number;
  /** Exact flat element indices to check for some wrt tensors (instead of a random subset). */
  indices?: Record<string, readonly number[]>;
  /** Extra options for buildGradient (inputShapes …). */
  gradientOptions?: Partial<GradientOptions>;
  seed?: number;
}

export interface GradcheckResult {
  maxError: number;
  errors: Record<string, number>;
  analytic: Record<string, number[]>;
  /** Checked element indices and their finite-difference values, per wrt. */
  numeric: Record<string, { index: number; value: number }[]>;
  gradientModel: ModelProto;
}

/** Compare the autodiff gradient model with central finite differences of the forward model. */
export async function gradcheck(model: ModelProto, options: GradcheckOptions): Promise<GradcheckResult> {
  const graph = Graph.fromModel(model);
  const outputs = options.outputs ?? graph.outputs.map((o) => o.name);
  const forward = await runModel(model, options.feeds);
  const gen = new Generator(options.seed ?? 1234);
  const projections = outputs.map((o) => {
    const t = forward[o];
    const dims = t.dims.map(Number);
    return { name: o, dims, values: Float64Array.from({ length: t.size }, () => gen.normal()) };
  });
  const loss = customLoss('projection', (b) => {
    const terms = projections.map((p) => {
      const r = b.constant(b.typeOf(p.name), p.dims, p.values, 'projection');
      return b.reduce('ReduceSum', b.mul(p.name, r), undefined, false);
    });
    return b.sum(terms);
  });
  const result = buildGradient(model, { loss, wrt: options.wrt, promote: true, ...options.gradientOptions });
  const lossModel = extractSubgraph(result.model, [result.loss]);
  const initializerValues = new Map<string, ort.Tensor>();
  const inits = new Map((graphOf(model).initializer ?? []).map((t) => [t.name, t]));
  for (const w of options.wrt) {
    if (options.feeds[w]) continue;
    const init = inits.get(w);
    if (!init) throw new Error(`gradcheck: no feed or initializer for '${w}'`);
    const data = tensorToFloat64(init);
    const dims = (init.dims ?? []).map(Number);
    initializerValues.set(
      w,
      init.dataType === DataType.DOUBLE ? tensor('float64', dims, data) : tensor('float32', dims, data),
    );
  }
  const feedsFor = (names: readonly string[], overrides: Record<string, ort.Tensor> = {}) => {
    const out: Record<string, ort.Tensor> = {};
    for (const n of names) out[n] = overrides[n] ?? options.feeds[n] ?? initializerValues.get(n)!;
    return out;
  };
  const gradInputs = result.inputs;
  const gradSession = await createSession(result.model);
  const analyticOut = await gradSession.run(feedsFor(gradInputs));
  await gradSession.release();

  const lossInputs = graphOf(lossModel).input.map((v) => v.name);
  const lossSession = await createSession(lossModel);
  const evalLoss = async (overrides: Record<string, ort.Tensor>) => {
    const out = await lossSession.run(feedsFor(lossInputs, overrides));
    return Number((out[result.loss].data as ArrayLike<number>)[0]);
  };
  const errors: Record<string, number> = {};
  const analytic: Record<string, number[]> = {};
  const numeric: Record<string, { index: number; value: number }[]> = {};
  for (const w of options.wrt) {
    const base = feedsFor([w])[w];
    const isDouble = base.type === 'float64';
    const h = options.eps ?? (isDouble ? 1e-6 : 1e-2);
    const grad = values(analyticOut[result.gradients[w]]);
    analytic[w] = grad;
    const n = base.size;
    const max = options.maxChecks ?? 48;
    const indices =
      options.indices?.[w] ?? (n <= max ? Array.from({ length: n }, (_, i) => i) : pick(n, max, gen));
    const checked: { index: number; value: number }[] = [];
    for (const i of indices) {
      const plus = Float64Array.from(base.data as ArrayLike<number>);
      const minus = Float64Array.from(base.data as ArrayLike<number>);
      plus[i] += h;
      minus[i] -= h;
      const dims = base.dims.map(Number);
      const type: FloatType = isDouble ? 'float64' : 'float32';
      const lp = await evalLoss({ [w]: tensor(type, dims, plus) });
      const lm = await evalLoss({ [w]: tensor(type, dims, minus) });
      // The perturbation actually applied (float32 rounds w ± h).
      const step = isDouble ? 2 * h : Math.fround(plus[i]) - Math.fround(minus[i]);
      checked.push({ index: i, value: (lp - lm) / step });
    }
    const scale = Math.max(1e-6, ...checked.map((c) => Math.abs(c.value)));
    errors[w] = Math.max(0, ...checked.map((c) => Math.abs(grad[c.index] - c.value) / scale));
    numeric[w] = checked;
  }
  await lossSession.release();
  return {
    maxError: Math.max(0, ...Object.values(errors)),
    errors,
    analytic,
    numeric,
    gradientModel: result.model,
  };
}

function pick(n: number, k: number, gen: Generator): number[] {
  const set = new Set<number>();
  while (set.size < k) set.add(Math.floor(gen.random() * n));
  return [...set].sort((a, b) => a - b);
}

/** Ops of the default domain used by a model (to assert that gradient models use only standard ops). */
export function opTypes(model: ModelProto): Set<string> {
  return new Set(graphOf(model).node.map((n) => `${n.domain || ''}${n.domain ? '.' : ''}${n.opType}`));
}

/** Logs the error so the test output records it (`[gradcheck] name float64 3.2e-9`). */
export function report(name: string, type: FloatType, result: GradcheckResult): void {
  console.info(`[gradcheck] ${name} ${type} ${result.maxError.toExponential(2)}`);
}

/** Tolerances used throughout the rule tests. */
export const TOL: Record<FloatType, number> = { float64: 1e-6, float32: 2e-2 };

/** gradcheck + report + assertion on the tolerance of the model's float type. */
export async function expectGradients(
  name: string,
  model: ModelProto,
  options: GradcheckOptions & { type?: FloatType; tol?: number },
): Promise<GradcheckResult> {
  const result = await gradcheck(model, options);
  const type = options.type ?? 'float64';
  report(name, type, result);
  const tol = options.tol ?? TOL[type];
  if (!(result.maxError < tol)) {
    const detail = Object.entries(result.errors)
      .map(([w, e]) => `${w}: ${e.toExponential(2)}`)
      .join(', ');
    throw new Error(`${name}: gradient error ${result.maxError.toExponential(2)} ≥ ${tol} (${detail})`);
  }
  return result;
}
