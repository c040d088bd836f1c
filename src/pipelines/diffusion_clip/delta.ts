/**
 * A DiffusionCLIP result as a file any later command can load: a safetensors "delta" of the UNet.
 *  - LoRA (the default): the adapters' factors in PEFT's layout, as `saveLora` writes them;
 *  - full fine-tuning: W_fine-tuned − W for every trained weight, named after the ONNX initializer it changes.
 * The metadata says which (`editkit_delta`: 'lora' | 'full') and what produced it (texts, t₀, steps).
 */
import {
  float32ToSafeTensor,
  Graph,
  makeTensor,
  readSafetensors,
  safeTensorToFloat32,
  tensorDims,
  tensorToFloat32,
  writeSafetensors,
  type ModelProto,
  type SafeTensor,
} from '../../autodiff/index.js';
import { UserError } from '../../util/errors.js';
import { loadDragLora, mergeLora } from '../drag/lora.js';

export type DeltaKind = 'lora' | 'full';

/** Write W_ft − W for `names` (values of the fine-tuned weights) against `base`. */
export async function saveFullDelta(
  path: string,
  base: ModelProto,
  tuned: Readonly<Record<string, Float32Array>>,
  metadata: Record<string, string>,
): Promise<void> {
  const graph = Graph.fromModel(base);
  const tensors = new Map<string, SafeTensor>();
  for (const [name, values] of Object.entries(tuned)) {
    const t = graph.initializers.get(name);
    if (!t) throw new Error(`'${name}' is not a weight of the UNet`);
    const original = tensorToFloat32(t);
    tensors.set(
      name,
      float32ToSafeTensor(
        values.map((v, i) => v - original[i]),
        tensorDims(t),
      ),
    );
  }
  await writeSafetensors(path, tensors, { format: 'pt', editkit_delta: 'full', ...metadata });
}

/** What a delta file holds, read without applying it. */
export async function readDeltaInfo(
  path: string,
): Promise<{ kind: DeltaKind; metadata: Record<string, string> }> {
  let file;
  try {
    file = await readSafetensors(path);
  } catch (error) {
    throw new UserError(
      `cannot read the delta '${path}': ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const kind = file.metadata['editkit_delta'] === 'full' ? 'full' : 'lora';
  return { kind, metadata: file.metadata };
}

/**
 * The base UNet with a delta merged in at `weight` (1 = as trained). `base` must have float32 weight initializers
 * (foldInitializerCasts) and is not modified.
 */
export async function applyDelta(base: ModelProto, path: string, weight = 1): Promise<ModelProto> {
  const { kind } = await readDeltaInfo(path);
  if (kind === 'lora') {
    const lora = await loadDragLora(path, base);
    if (weight !== 1) {
      for (const adapter of lora.adapters) adapter.scale *= weight;
    }
    return mergeLora(base, lora);
  }
  const file = await readSafetensors(path);
  const graph = Graph.fromModel(base);
  for (const [name, delta] of file.tensors) {
    const t = graph.initializers.get(name);
    if (!t) throw new UserError(`the delta '${path}' changes '${name}', which this UNet does not have`);
    const dims = tensorDims(t);
    if (dims.join(',') !== delta.shape.join(','))
      throw new UserError(
        `the delta '${path}' has '${name}' as [${delta.shape.join(', ')}], the UNet as [${dims.join(', ')}]`,
      );
    const d = safeTensorToFloat32(delta);
    graph.initializers.set(
      name,
      makeTensor(
        name,
        t.dataType,
        dims,
        tensorToFloat32(t).map((v, i) => v + weight * d[i]),
      ),
    );
  }
  return graph.toModel();
}
