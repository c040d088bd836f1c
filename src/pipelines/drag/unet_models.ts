/**
 * UNet graph variants DragDiffusion runs, made from the bundle's ONNX file: sessions from in-memory models, the
 * float16-storage fold LoRA needs, and the mutual self-attention rewrite of the final denoising.
 */
import { dirname } from 'node:path';
import {
  DataType,
  Graph,
  GraphBuilder,
  graphOf,
  isExternal,
  loadModel,
  resolveExternalData,
  type ModelProto,
} from '../../autodiff/index.js';

// Session helpers shared with the rest of EditKit; re-exported for the drag modules that import them from here.
export { gradientSessionSettings, sessionFromModel } from '../../autodiff/session.js';
export type { SessionOptions as SessionSettings } from '../../runtime/session.js';

// Lives with the LoRA rewrite, which needs it; re-exported for the drag modules that import it from here.
export { foldInitializerCasts } from '../../autodiff/lora.js';

/** Where sessions of graphs made from a UNet are written: beside the original when it keeps weights on disk. */
export interface SessionPlacement {
  besides?: string;
}

export interface UnetGraph {
  model: ModelProto;
  placement: SessionPlacement;
  /** True when some weights stay in the export's external-data file(s) and were not read into JavaScript. */
  weightsOnDisk: boolean;
}

/**
 * The UNet's graph for DragDiffusion's rewrites (LoRA, the drag gradient, mutual self-attention). Weights an export
 * keeps in external-data files (SD 1.5: 3.4 GB) are not read: every graph made from this one still points at
 * them, and its session is written beside the original so that ONNX Runtime reads them from there. Only weights
 * stored as float16 behind a Cast are read, because LoRA folds those casts.
 */
export async function loadUnetGraph(path: string): Promise<UnetGraph> {
  const model = await loadModel(path, { externalData: false });
  const g = graphOf(model);
  const external = g.initializer.filter(isExternal);
  if (external.length === 0) return { model, placement: {}, weightsOnDisk: false };
  const castSources = new Set(g.node.filter((n) => n.opType === 'Cast').map((n) => n.input[0]));
  const needsValues = external.some(
    (t) => castSources.has(t.name) && (t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16),
  );
  if (needsValues) {
    await resolveExternalData(model, dirname(path));
    return { model, placement: {}, weightsOnDisk: false };
  }
  return { model, placement: { besides: path }, weightsOnDisk: true };
}

export interface MutualAttentionOptions {
  /**
   * First self-attention layer (in execution order: down, mid, up) whose keys and values come from the reference.
   * Default: ⌊10/16 · layers⌋, the official start_layer = 10 of SD 1.5's 16 transformer blocks (its two
   * highest-resolution up blocks), scaled to the model's count.
   */
  startLayer?: number;
}

/**
 * Mutual self-attention (MasaCtrl, used by DragDiffusion's final denoising): the UNet runs on the batch
 * [reference, edited] and, in the chosen self-attention layers, both batch items attend to the reference's keys and
 * values, so the edited image keeps the input's appearance. In the graph: the outputs of attn1's to_k and to_v
 * are replaced by Gather(·, [0, 0], axis 0). The model then needs batch 2. Returns the new model and the layers.
 */
export function mutualSelfAttentionModel(
  unet: ModelProto,
  options: MutualAttentionOptions = {},
): { model: ModelProto; layers: string[]; total: number } {
  const graph = Graph.fromModel(unet);
  const modules: string[] = [];
  const lastOutput = new Map<string, string>();
  for (const node of graph.nodes) {
    const m = /^(.*\/attn1)\/(to_k|to_v)\//.exec(node.name ?? '');
    if (!m) continue;
    if (!modules.includes(m[1])) modules.push(m[1]);
    // The projection's result is what its last node (MatMul, or the bias Add) writes.
    lastOutput.set(`${m[1]}|${m[2]}`, node.output[0]);
  }
  const total = modules.length;
  if (total === 0)
    throw new Error('mutual self-attention: no attn1/to_k, attn1/to_v nodes in the UNet graph');
  const start = options.startLayer ?? Math.floor((10 / 16) * total);
  const chosen = modules.slice(Math.min(Math.max(0, start), total));
  const b = new GraphBuilder(graph, 'mutual');
  const reference = b.int64s([0, 0]);
  for (const module of chosen) {
    for (const proj of ['to_k', 'to_v']) {
      const tensor = lastOutput.get(`${module}|${proj}`);
      if (!tensor) continue;
      const consumers = graph.consumers(tensor);
      const gathered = b.op('Gather', [tensor, reference], { axis: 0 });
      for (const c of consumers) c.input = c.input.map((i) => (i === tensor ? gathered : i));
    }
  }
  graph.invalidate();
  graph.topologicalSort();
  return { model: graph.toModel(), layers: chosen, total };
}
