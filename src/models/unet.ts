import { NDArray } from '../runtime/ndarray.js';
import type { ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';

/**
 * The denoising UNet: (sample, timestep, encoder_hidden_states) → out_sample.
 *
 * Exports disagree on the timestep input (int64 [1] or [batch] from Optimum, float scalar from older scripts),
 * so its shape and dtype are read from the session's metadata rather than guessed.
 */
export class UNet {
  readonly outputName: string;
  private readonly timestepLayout: 'scalar' | 'single' | 'batch';

  constructor(readonly session: ModelSession) {
    for (const name of ['sample', 'timestep', 'encoder_hidden_states']) {
      if (!session.hasInput(name)) {
        throw new ModelError(
          `'${session.path}' must take sample, timestep and encoder_hidden_states (a diffusers UNet); its inputs are ${[...session.inputs.keys()].join(', ')}`,
        );
      }
    }
    this.outputName = session.hasOutput('out_sample') ? 'out_sample' : [...session.outputs.keys()][0];
    const shape = session.input('timestep').shape;
    this.timestepLayout = shape.length === 0 ? 'scalar' : shape[0] === 1 ? 'single' : 'batch';
  }

  /** Input channels from the metadata when fixed (4, or 9 for inpainting UNets). */
  get inChannels(): number | undefined {
    const dim = this.session.input('sample').shape[1];
    return typeof dim === 'number' ? dim : undefined;
  }

  get crossAttentionDim(): number | undefined {
    const dim = this.session.input('encoder_hidden_states').shape[2];
    return typeof dim === 'number' ? dim : undefined;
  }

  async predict(sample: NDArray, timestep: number, encoderHiddenStates: NDArray): Promise<NDArray> {
    const batch = sample.shape[0];
    const timestepShape =
      this.timestepLayout === 'scalar' ? [] : this.timestepLayout === 'single' ? [1] : [batch];
    const timesteps = NDArray.full(timestepShape, timestep);
    const out = await this.session.run(
      { sample, timestep: timesteps, encoder_hidden_states: encoderHiddenStates },
      [this.outputName],
    );
    return out[this.outputName];
  }
}
