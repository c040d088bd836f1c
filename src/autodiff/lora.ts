/**
 * LoRA as a graph rewrite. For each targeted weight W (an initializer consumed by MatMul, Gemm or Conv) the node's
 * output y becomes y + scale · Δ(x), a low-rank branch with two new initializers in PEFT's layout, so adapter
 * files interoperate with diffusers/PEFT (`<module>.lora_A.weight`, `<module>.lora_B.weight`):
 *  - MatMul (torch's Linear exports x @ Wᵀ): A [r, in], B [out, r], Δ = (x @ Aᵀ) @ Bᵀ;
 *  - Gemm (transA = 0): the same, with in/out read from transB;
 *  - Conv (group 1): A [r, in, kh, kw] with the base conv's strides/pads/dilations, B [out, r, 1, 1].
 * scale = alpha / rank. B starts at zero (the adapted model equals the base). A starts as diffusers'
 * `LoRALinearLayer`/`LoRAConv2dLayer` draw it, N(0, (1/rank)²), so that adapters trained here move as fast as the
 * reference code's; `initA: 'fan-in'` draws N(0, 1/fan_in) instead (EditKit's first init, kept for comparison).
 *
 * Modules are named after the node (`/down_blocks.0/attentions.0/…/attn1/to_q/MatMul` gives
 * `down_blocks.0.attentions.0.….attn1.to_q`), else after the weight (`conv_in.weight` gives `conv_in`).
 * The adapters are trained through {@link buildGradient} with `wrt: lora.parameters` (promote them to feed the
 * optimizer's values each step) and saved with {@link saveLora}.
 */
import { attrInt, copyAttrs } from './attrs.js';
import { Graph, GraphBuilder } from './graph.js';
import {
  DataType,
  graphOf,
  makeTensor,
  setTensorValues,
  tensorDims,
  tensorToFloat32,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from './onnx_io.js';
import {
  float32ToSafeTensor,
  readSafetensors,
  safeTensorToFloat32,
  writeSafetensors,
  type SafeTensor,
} from './safetensors.js';
import { Generator } from '../runtime/random.js';
import { fromPeftLayout, toPeftLayout, type LoraKeyLayout } from './lora_layouts.js';

export type LoraOp = 'MatMul' | 'Gemm' | 'Conv';

export interface LoraTarget {
  /** The module path, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. */
  module: string;
  op: LoraOp;
  node: string;
  weight: string;
}

/** SD's attention projections: to_q, to_k, to_v and to_out (to_out.0 in diffusers' naming). */
export const ATTENTION_PROJECTIONS = /(^|\.)(to_q|to_k|to_v|to_out(\.0)?)$/;

export interface LoraOptions {
  rank: number;
  /** scale = alpha / rank (default alpha = rank, scale 1). */
  alpha?: number;
  /** Which modules get adapters (default {@link ATTENTION_PROJECTIONS}). */
  targets?: RegExp | readonly string[] | ((target: LoraTarget) => boolean);
  /** Operator kinds to adapt (default all three). */
  ops?: readonly LoraOp[];
  /** Prefix of the adapter tensor names, e.g. 'unet.' as diffusers writes them (default ''). */
  prefix?: string;
  /** Seed of A's initialisation (default 0). */
  seed?: number;
  /** B's initialisation: zeros (default, the adapter starts as a no-op) or small normal values. */
  initB?: 'zeros' | 'normal';
  /** A's initialisation (see {@link LoraInitA}; default 'diffusers'). */
  initA?: LoraInitA;
}

/**
 * How A is drawn: 'diffusers' is N(0, (1/rank)²) as diffusers' LoRA layers (and so DragDiffusion's reference code)
 * do; 'fan-in' is N(0, 1/fan_in), where fan_in = in_features · kernel size.
 */
export type LoraInitA = 'diffusers' | 'fan-in';
export const LORA_INIT_A: readonly LoraInitA[] = ['diffusers', 'fan-in'];

/** The standard deviation of A's entries under `init`. */
export function loraInitStd(init: LoraInitA, rank: number, fanIn: number): number {
  return init === 'fan-in' ? 1 / Math.sqrt(fanIn) : 1 / rank;
}

export interface LoraAdapter extends LoraTarget {
  /** Initializer names of the two factors. */
  a: string;
  b: string;
  rank: number;
  scale: number;
  inFeatures: number;
  outFeatures: number;
}

export interface LoraModel {
  model: ModelProto;
  adapters: LoraAdapter[];
  /** Every A and B name, for `wrt` and the optimizer. */
  parameters: string[];
}

function moduleName(node: NodeProto, weight: string): string {
  const parts = (node.name ?? '').split('/').filter(Boolean);
  if (parts.length >= 2) return parts.slice(0, -1).join('.');
  if (!weight.startsWith('onnx::') && weight.endsWith('.weight')) return weight.slice(0, -'.weight'.length);
  return node.name || weight;
}

function matches(targets: LoraOptions['targets'], t: LoraTarget): boolean {
  if (targets === undefined) return ATTENTION_PROJECTIONS.test(t.module);
  if (targets instanceof RegExp) return targets.test(t.module);
  if (typeof targets === 'function') return targets(t);
  return targets.includes(t.module);
}

/** The MatMul/Gemm/Conv nodes whose weight is an initializer, with their module names (to choose targets). */
export function findLoraTargets(
  model: ModelProto,
  ops: readonly LoraOp[] = ['MatMul', 'Gemm', 'Conv'],
): LoraTarget[] {
  const g = graphOf(model);
  const inits = new Set(g.initializer.map((t) => t.name));
  const inputs = new Set(g.input.map((v) => v.name));
  const out: LoraTarget[] = [];
  for (const node of g.node) {
    if ((node.domain ?? '') !== '' || !ops.includes(node.opType as LoraOp)) continue;
    const weight = node.input[1];
    if (!weight || !inits.has(weight) || inputs.has(weight)) continue;
    if (node.opType === 'Gemm' && attrInt(node, 'transA', 0) !== 0) continue;
    if (node.opType === 'Conv' && attrInt(node, 'group', 1) !== 1) continue;
    out.push({ module: moduleName(node, weight), op: node.opType as LoraOp, node: node.name, weight });
  }
  return out;
}

/** Insert LoRA branches; the input model is not modified. */
export function addLora(model: ModelProto, options: LoraOptions): LoraModel {
  const { rank } = options;
  if (!Number.isInteger(rank) || rank < 1)
    throw new Error(`LoRA rank must be a positive integer, got ${rank}`);
  if (options.initA !== undefined && !LORA_INIT_A.includes(options.initA))
    throw new Error(`LoRA init must be one of ${LORA_INIT_A.join(', ')}, got '${String(options.initA)}'`);
  const scale = (options.alpha ?? rank) / rank;
  const prefix = options.prefix ?? '';
  const chosen = findLoraTargets(model, options.ops ?? ['MatMul', 'Gemm', 'Conv']).filter((t) =>
    matches(options.targets, t),
  );
  if (chosen.length === 0) throw new Error('addLora: no MatMul/Gemm/Conv weight matches the targets');
  const graph = Graph.fromModel(model);
  const b = new GraphBuilder(graph, 'lora');
  const gen = new Generator(options.seed ?? 0);
  const adapters: LoraAdapter[] = [];
  const used = new Set<string>();
  for (const target of chosen) {
    const node = graph.nodes.find((n) => n.name === target.node && n.input[1] === target.weight);
    if (!node) continue;
    const w = graph.initializers.get(target.weight)!;
    const dims = tensorDims(w);
    const type = w.dataType;
    let inF: number;
    let outF: number;
    let aDims: number[];
    let bDims: number[];
    if (target.op === 'MatMul') {
      if (dims.length !== 2) continue;
      [inF, outF] = dims;
      aDims = [rank, inF];
      bDims = [outF, rank];
    } else if (target.op === 'Gemm') {
      const transB = attrInt(node, 'transB', 0) === 1;
      [inF, outF] = transB ? [dims[1], dims[0]] : dims;
      aDims = [rank, inF];
      bDims = [outF, rank];
    } else {
      [outF, inF] = dims;
      aDims = [rank, inF, ...dims.slice(2)];
      bDims = [outF, rank, ...dims.slice(2).map(() => 1)];
    }
    let module = prefix + target.module;
    for (let k = 2; used.has(module); k++) module = `${prefix}${target.module}_${k}`;
    used.add(module);
    const aName = `${module}.lora_A.weight`;
    const bName = `${module}.lora_B.weight`;
    if (graph.has(aName) || graph.has(bName))
      throw new Error(`addLora: '${aName}' already exists (LoRA applied twice?)`);
    const std = loraInitStd(
      options.initA ?? 'diffusers',
      rank,
      aDims.slice(1).reduce((p, d) => p * d, 1),
    );
    const aValues = Float32Array.from({ length: aDims.reduce((p, d) => p * d, 1) }, () => gen.normal() * std);
    const bValues =
      options.initB === 'normal'
        ? Float32Array.from({ length: bDims.reduce((p, d) => p * d, 1) }, () => gen.normal() * 0.01)
        : new Float32Array(bDims.reduce((p, d) => p * d, 1));
    graph.reserve(aName);
    graph.reserve(bName);
    graph.addInitializer(makeTensor(aName, type, aDims, aValues));
    graph.addInitializer(makeTensor(bName, type, bDims, bValues));

    const scoped = b.scoped(`lora/${module}`);
    const x = node.input[0];
    const y = node.output[0];
    const base = graph.uniqueName(`${y}/base`);
    node.output[0] = base;
    graph.invalidate();
    let delta: string;
    if (target.op === 'Conv') {
      const down = scoped.op(
        'Conv',
        [x, aName],
        copyAttrs(node, ['strides', 'pads', 'dilations', 'auto_pad']),
      );
      delta = scoped.op('Conv', [down, bName]);
    } else {
      const down = scoped.op('MatMul', [x, scoped.transpose(aName, [1, 0])]);
      delta = scoped.op('MatMul', [down, scoped.transpose(bName, [1, 0])]);
    }
    if (scale !== 1) delta = scoped.mul(delta, scoped.constant(type, [], [scale], 'scale'));
    scoped.op('Add', [base, delta], undefined, { outputs: [y] });
    adapters.push({ ...target, module, a: aName, b: bName, rank, scale, inFeatures: inF, outFeatures: outF });
  }
  graph.topologicalSort();
  return { model: graph.toModel(), adapters, parameters: adapters.flatMap((a) => [a.a, a.b]) };
}

function initializerMap(model: ModelProto): Map<string, TensorProto> {
  return new Map(graphOf(model).initializer.map((t) => [t.name, t]));
}

/** The adapters' current values (from the model's initializers) as safetensors entries. */
export function loraTensors(
  model: ModelProto,
  adapters: readonly LoraAdapter[],
  dtype: 'F32' | 'F16' | 'BF16' = 'F32',
): Map<string, SafeTensor> {
  const inits = initializerMap(model);
  const out = new Map<string, SafeTensor>();
  for (const name of adapters.flatMap((a) => [a.a, a.b])) {
    const t = inits.get(name);
    if (!t) throw new Error(`LoRA tensor '${name}' is not in the model (was it promoted to an input?)`);
    out.set(name, float32ToSafeTensor(tensorToFloat32(t), tensorDims(t), dtype));
  }
  return out;
}

/**
 * Write the adapter values (`values` overrides the model's, e.g. the optimizer's Float32Arrays) and the
 * rank/alpha metadata to a safetensors file, in PEFT's key layout or diffusers' (see lora_layouts.ts). The
 * diffusers layouts carry no alpha that diffusers reads, so there each adapter's scale is folded into B and the
 * file says alpha = rank: every reader then applies the same ΔW.
 */
export async function saveLora(
  path: string,
  lora: LoraModel,
  options: {
    values?: Readonly<Record<string, Float32Array>>;
    dtype?: 'F32' | 'F16' | 'BF16';
    metadata?: Record<string, string>;
    layout?: LoraKeyLayout;
  } = {},
): Promise<void> {
  const layout = options.layout ?? 'peft';
  const tensors = loraTensors(lora.model, lora.adapters, options.dtype);
  for (const [name, v] of Object.entries(options.values ?? {})) {
    const t = tensors.get(name);
    if (!t) throw new Error(`saveLora: '${name}' is not a LoRA tensor of this model`);
    tensors.set(name, float32ToSafeTensor(v, t.shape, options.dtype));
  }
  const first = lora.adapters[0];
  let alpha = (first?.scale ?? 1) * (first?.rank ?? 0);
  if (layout !== 'peft') {
    for (const adapter of lora.adapters) {
      if (adapter.scale === 1) continue;
      const b = tensors.get(adapter.b)!;
      tensors.set(
        adapter.b,
        float32ToSafeTensor(
          safeTensorToFloat32(b).map((v) => v * adapter.scale),
          b.shape,
          options.dtype,
        ),
      );
    }
    alpha = first?.rank ?? 0;
  }
  await writeSafetensors(path, fromPeftLayout(tensors, layout), {
    format: 'pt',
    lora_rank: String(first?.rank ?? 0),
    lora_alpha: String(alpha),
    lora_key_layout: layout,
    ...options.metadata,
  });
}

/**
 * Load adapter values into the model's LoRA initializers (in place), from a file in any key layout. Every adapter
 * tensor of the model must be in the file with the same shape; extra tensors in the file are an error unless
 * `allowExtra`.
 */
export async function loadLora(
  path: string,
  lora: LoraModel,
  options: { allowExtra?: boolean } = {},
): Promise<void> {
  const file = await readSafetensors(path);
  applyLoraTensors(lora, file.tensors, options);
}

/**
 * Set the adapters from tensors in any key layout. A per-module alpha in the file (`<module>.alpha`) that differs
 * from the adapter's own scale is folded into B, so ΔW is what the file means.
 */
export function applyLoraTensors(
  lora: LoraModel,
  tensors: ReadonlyMap<string, SafeTensor>,
  options: { allowExtra?: boolean } = {},
): void {
  const peft = toPeftLayout(tensors, options);
  const inits = initializerMap(lora.model);
  const names = lora.adapters.flatMap((a) => [a.a, a.b]);
  for (const adapter of lora.adapters) {
    const alpha = peft.alphas.get(adapter.module);
    const rescale = alpha === undefined ? 1 : alpha / adapter.rank / adapter.scale;
    for (const name of [adapter.a, adapter.b]) {
      const t = peft.tensors.get(name);
      if (!t) throw new Error(`the LoRA file has no tensor '${name}'`);
      const init = inits.get(name);
      if (!init) throw new Error(`LoRA tensor '${name}' is not an initializer of the model`);
      const dims = tensorDims(init);
      if (t.shape.join(',') !== dims.join(',')) {
        throw new Error(
          `LoRA tensor '${name}' has shape [${t.shape.join(', ')}], the model expects [${dims.join(', ')}]`,
        );
      }
      const values = safeTensorToFloat32(t);
      setTensorValues(init, name === adapter.b && rescale !== 1 ? values.map((v) => v * rescale) : values);
    }
  }
  if (!options.allowExtra) {
    const extra = [...peft.tensors.keys()].filter((k) => !names.includes(k));
    if (extra.length > 0)
      throw new Error(
        `the LoRA file has tensors this model has no adapter for: ${extra.slice(0, 5).join(', ')}`,
      );
  }
}

/** W + scale · ΔW for one adapter, in the base weight's layout (to bake an adapter into the base weights). */
export function mergedWeight(model: ModelProto, adapter: LoraAdapter): Float32Array {
  const inits = initializerMap(model);
  const w = tensorToFloat32(inits.get(adapter.weight)!);
  const a = tensorToFloat32(inits.get(adapter.a)!);
  const bw = tensorToFloat32(inits.get(adapter.b)!);
  const { rank: r, inFeatures: nIn, outFeatures: nOut, scale } = adapter;
  const kernel = a.length / (r * nIn);
  const node = graphOf(model).node.find((n) => n.name === adapter.node);
  // torch's Linear exports MatMul with Wᵀ [in, out]; Gemm with transB=1 keeps W [out, in].
  const inOut =
    adapter.op === 'MatMul' ||
    (adapter.op === 'Gemm' && node !== undefined && attrInt(node, 'transB', 0) === 0);
  const out = w.slice();
  for (let o = 0; o < nOut; o++) {
    for (let i = 0; i < nIn; i++) {
      for (let k = 0; k < kernel; k++) {
        let s = 0;
        for (let q = 0; q < r; q++) s += bw[o * r + q] * a[(q * nIn + i) * kernel + k];
        const index = adapter.op === 'Conv' ? (o * nIn + i) * kernel + k : inOut ? i * nOut + o : o * nIn + i;
        out[index] += scale * s;
      }
    }
  }
  return out;
}

/**
 * Replace `Cast(float16 initializer → float32)` by a float32 initializer, in place. EditKit's bundled models store
 * weights as float16 followed by a Cast (ONNX Runtime folds it at load); LoRA needs the weight itself to be an
 * initializer of the MatMul it adapts. Returns the number of casts folded.
 */
export function foldInitializerCasts(model: ModelProto): number {
  const g = graphOf(model);
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const keep: typeof g.node = [];
  const folded = new Set<string>();
  for (const node of g.node) {
    const source =
      node.opType === 'Cast' && (node.domain ?? '') === '' ? inits.get(node.input[0]) : undefined;
    const to = node.attribute.find((a) => a.name === 'to')?.i;
    const toType = typeof to === 'number' ? to : to?.toNumber();
    const isHalf = source && (source.dataType === DataType.FLOAT16 || source.dataType === DataType.BFLOAT16);
    if (!source || !isHalf || toType !== DataType.FLOAT) {
      keep.push(node);
      continue;
    }
    g.initializer.push(
      makeTensor(node.output[0], DataType.FLOAT, tensorDims(source), tensorToFloat32(source)),
    );
    folded.add(source.name);
  }
  g.node = keep;
  const stillRead = new Set(keep.flatMap((n) => n.input));
  g.initializer = g.initializer.filter((t) => !folded.has(t.name) || stillRead.has(t.name));
  return folded.size;
}
