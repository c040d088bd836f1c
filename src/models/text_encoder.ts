import type { NDArray } from '../runtime/ndarray.js';
import { IntArray, type ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';

/** CLIP text encoder: token ids [B, 77] → last_hidden_state [B, 77, D]. */
export class TextEncoder {
  readonly outputName: string;

  constructor(readonly session: ModelSession) {
    if (!session.hasInput('input_ids')) {
      throw new ModelError(
        `'${session.path}' must take 'input_ids' (a CLIP text encoder); its inputs are ${[...session.inputs.keys()].join(', ')}`,
      );
    }
    this.outputName = session.hasOutput('last_hidden_state')
      ? 'last_hidden_state'
      : [...session.outputs.keys()][0];
  }

  /** Hidden size from the output metadata when fixed, else undefined (then the config says). */
  get hiddenSize(): number | undefined {
    const dim = this.session.outputs.get(this.outputName)?.shape[2];
    return typeof dim === 'number' ? dim : undefined;
  }

  async encode(inputIds: Int32Array, shape: readonly [number, number]): Promise<NDArray> {
    const out = await this.session.run({ input_ids: new IntArray(inputIds, shape) }, [this.outputName]);
    return out[this.outputName];
  }
}
