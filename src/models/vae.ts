import { NDArray } from '../runtime/ndarray.js';
import type { ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';

/**
 * VAE encoder. Optimum exports return either `latent_sample` or `latent_parameters` (mean ‖ logvar on the
 * channel axis); editing wants a deterministic encoding, so we take the posterior mean (docs/pipelines.md).
 */
export class VaeEncoder {
  readonly outputName: string;
  readonly returnsParameters: boolean;

  constructor(
    readonly session: ModelSession,
    readonly scalingFactor: number,
  ) {
    if (!session.hasInput('sample')) {
      throw new ModelError(`'${session.path}' must take 'sample' (a VAE encoder); its inputs are ${[...session.inputs.keys()].join(', ')}`);
    }
    if (session.hasOutput('latent_parameters')) {
      this.outputName = 'latent_parameters';
      this.returnsParameters = true;
    } else if (session.hasOutput('latent_sample')) {
      this.outputName = 'latent_sample';
      this.returnsParameters = false;
    } else {
      throw new ModelError(
        `'${session.path}' must output 'latent_sample' or 'latent_parameters'; it outputs ${[...session.outputs.keys()].join(', ')}`,
      );
    }
  }

  /** Image [B,3,H,W] in [-1,1] → scaled latents [B,C,H/f,W/f]. */
  async encode(image: NDArray): Promise<NDArray> {
    const raw = (await this.session.run({ sample: image }, [this.outputName]))[this.outputName];
    const latentMean = this.returnsParameters ? firstHalfOfChannels(raw) : raw;
    return latentMean.scale(this.scalingFactor);
  }
}

/** VAE decoder: scaled latents → image [B,3,H,W] in [0,1]. */
export class VaeDecoder {
  readonly outputName: string;

  constructor(
    readonly session: ModelSession,
    readonly scalingFactor: number,
  ) {
    if (!session.hasInput('latent_sample')) {
      throw new ModelError(`'${session.path}' must take 'latent_sample' (a VAE decoder); its inputs are ${[...session.inputs.keys()].join(', ')}`);
    }
    this.outputName = session.hasOutput('sample') ? 'sample' : [...session.outputs.keys()][0];
  }

  get latentChannels(): number | undefined {
    const dim = this.session.input('latent_sample').shape[1];
    return typeof dim === 'number' ? dim : undefined;
  }

  /** Decoded image in [-1, 1], unclamped (what the network returns). */
  async decodeRaw(latents: NDArray): Promise<NDArray> {
    const input = latents.scale(1 / this.scalingFactor);
    return (await this.session.run({ latent_sample: input }, [this.outputName]))[this.outputName];
  }

  async decode(latents: NDArray): Promise<NDArray> {
    const raw = await this.decodeRaw(latents);
    if (raw.data.some(Number.isNaN)) {
      // The usual cause is fp16 overflow inside the decoder; a black image would hide it.
      throw new ModelError(`'${this.session.path}' produced NaN values (an fp16 VAE overflowing?); try an fp32 VAE decoder`);
    }
    return raw.map((v) => Math.min(1, Math.max(0, v / 2 + 0.5)));
  }
}

function firstHalfOfChannels(parameters: NDArray): NDArray {
  const [batch, channels, ...spatial] = parameters.shape;
  if (channels % 2 !== 0) {
    throw new ModelError(`latent_parameters has ${channels} channels; expected mean and logvar (an even number)`);
  }
  const half = channels / 2;
  const plane = spatial.reduce((a, b) => a * b, 1);
  const out = new Float32Array(batch * half * plane);
  for (let b = 0; b < batch; b++) {
    out.set(parameters.data.subarray(b * channels * plane, (b * channels + half) * plane), b * half * plane);
  }
  return new NDArray(out, [batch, half, ...spatial]);
}
