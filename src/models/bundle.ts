import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resolveDevice, type DeviceName, type ResolvedDevice } from '../runtime/device.js';
import { ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';
import { TextEncoder } from './text_encoder.js';
import { ClipTokenizer } from './tokenizer.js';
import { UNet } from './unet.js';
import { VaeDecoder, VaeEncoder } from './vae.js';

/** SD 1.x/2.x VAE scaling factor, used when the VAE config does not state one (diffusers' default). */
export const DEFAULT_VAE_SCALING_FACTOR = 0.18215;

export interface LoadBundleOptions {
  device?: DeviceName;
  /** CPU threads per session; ORT's default (all cores) when omitted. */
  intraOpNumThreads?: number;
}

type JsonObject = Record<string, unknown>;

/**
 * A Stable-Diffusion pipeline stored in the diffusers/Optimum ONNX layout:
 *
 *     model_index.json  tokenizer/  text_encoder/model.onnx  unet/model.onnx
 *     vae_encoder/model.onnx  vae_decoder/model.onnx  scheduler/scheduler_config.json
 *
 * Loading validates that the parts fit together (latent channels, cross-attention width) so a mismatched bundle
 * fails at load with a message naming the file, not deep inside a denoising loop.
 */
export class StableDiffusionBundle {
  private vaeEncoderPromise: Promise<VaeEncoder> | undefined;

  private constructor(
    readonly dir: string,
    readonly device: ResolvedDevice,
    readonly modelIndex: JsonObject,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: TextEncoder,
    readonly unet: UNet,
    readonly vaeDecoder: VaeDecoder,
    readonly schedulerConfig: JsonObject,
    /** Image pixels per latent pixel, 2^(number of VAE down blocks − 1): 8 for SD, derived, never assumed. */
    readonly vaeScaleFactor: number,
    /**
     * Image sizes must be multiples of this: the VAE factor times the UNet's own downsampling. Exported UNets
     * upsample by a fixed ×2 (the shapes were traced), so latents must divide evenly at every level — for
     * SD 1.5 that is 8 × 8 = 64 pixels.
     */
    readonly sizeMultiple: number,
    readonly latentChannels: number,
    readonly unetInChannels: number,
    readonly vaeScalingFactor: number,
    private readonly sessionOptions: { device: ResolvedDevice; intraOpNumThreads?: number },
  ) {}

  /** A 9-channel UNet takes [latents, mask, masked-image latents]: the dedicated inpainting models. */
  get isInpaintingUNet(): boolean {
    return this.unetInChannels === 2 * this.latentChannels + 1;
  }

  /** Default image size: the UNet's sample_size × the VAE factor, as diffusers computes it. */
  get defaultImageSize(): number {
    const sampleSize = readOptionalNumber(readOptionalJson(join(this.dir, 'unet', 'config.json')), 'sample_size');
    return (sampleSize ?? 64) * this.vaeScaleFactor;
  }

  /**
   * The image-size multiple from the folder's config files alone (VAE and UNet `block_out_channels`), without
   * opening a model or probing a device; undefined when the configs do not say (load() then measures it).
   */
  static sizeMultipleFromConfig(dir: string): number | undefined {
    const root = resolve(dir);
    const vaeConfig =
      readOptionalJson(join(root, 'vae_decoder', 'config.json')) ??
      readOptionalJson(join(root, 'vae_encoder', 'config.json'));
    const vaeBlocks = vaeConfig?.['block_out_channels'];
    if (!Array.isArray(vaeBlocks) || vaeBlocks.length === 0) return undefined;
    const unetBlocks = readOptionalJson(join(root, 'unet', 'config.json'))?.['block_out_channels'];
    const unetDownsampling = 2 ** ((Array.isArray(unetBlocks) && unetBlocks.length > 0 ? unetBlocks.length : 4) - 1);
    return 2 ** (vaeBlocks.length - 1) * unetDownsampling;
  }

  static async load(dir: string, options: LoadBundleOptions = {}): Promise<StableDiffusionBundle> {
    const root = resolve(dir);
    if (!existsSync(root)) throw new ModelError(`model folder '${dir}' does not exist`);
    const modelIndex = readJson(join(root, 'model_index.json'), 'the pipeline index of a diffusers/Optimum export');
    if ('text_encoder_2' in modelIndex) {
      throw new ModelError(
        `'${join(root, 'model_index.json')}' describes an SDXL pipeline (text_encoder_2); EditKit supports SD 1.x/2.x bundles`,
      );
    }
    for (const component of ['text_encoder', 'unet', 'vae_decoder']) {
      requireFile(join(root, component, 'model.onnx'), `the ${component.replace('_', ' ')} ONNX model`);
    }
    const schedulerConfig = readJson(
      join(root, 'scheduler', 'scheduler_config.json'),
      'the scheduler configuration (diffusers scheduler_config.json)',
    );
    const tokenizer = await ClipTokenizer.fromDirectory(join(root, 'tokenizer'));

    const device = await resolveDevice(options.device ?? 'auto');
    const sessionOptions = { device, intraOpNumThreads: options.intraOpNumThreads };
    const open = (component: string) => ModelSession.create(join(root, component, 'model.onnx'), sessionOptions);
    // Sequential on purpose: parallel session creation on one GPU buys nothing and risks ORT's WebGPU races.
    const textEncoder = new TextEncoder(await open('text_encoder'));
    const unet = new UNet(await open('unet'));
    const vaeConfig =
      readOptionalJson(join(root, 'vae_decoder', 'config.json')) ??
      readOptionalJson(join(root, 'vae_encoder', 'config.json'));
    const vaeScalingFactor = readOptionalNumber(vaeConfig, 'scaling_factor') ?? DEFAULT_VAE_SCALING_FACTOR;
    const vaeDecoder = new VaeDecoder(await open('vae_decoder'), vaeScalingFactor);

    const unetConfig = readOptionalJson(join(root, 'unet', 'config.json'));
    const textConfig = readOptionalJson(join(root, 'text_encoder', 'config.json'));
    const latentChannels = vaeDecoder.latentChannels ?? readOptionalNumber(vaeConfig, 'latent_channels') ?? 4;
    const unetInChannels = unet.inChannels ?? readOptionalNumber(unetConfig, 'in_channels') ?? latentChannels;
    if (unetInChannels !== latentChannels && unetInChannels !== 2 * latentChannels + 1) {
      throw new ModelError(
        `'${join(root, 'unet', 'model.onnx')}' takes ${unetInChannels} input channels, but the VAE's latents have ${latentChannels} (expected ${latentChannels}, or ${2 * latentChannels + 1} for an inpainting UNet)`,
      );
    }
    const crossAttentionDim = unet.crossAttentionDim ?? readOptionalNumber(unetConfig, 'cross_attention_dim');
    const hiddenSize = textEncoder.hiddenSize ?? readOptionalNumber(textConfig, 'hidden_size');
    if (crossAttentionDim !== undefined && hiddenSize !== undefined && crossAttentionDim !== hiddenSize) {
      throw new ModelError(
        `'${join(root, 'unet', 'model.onnx')}' expects text embeddings of width ${crossAttentionDim}, but '${join(root, 'text_encoder', 'model.onnx')}' produces ${hiddenSize}`,
      );
    }
    const vocabSize = readOptionalNumber(textConfig, 'vocab_size');
    // Every id the tokenizer can emit, added tokens included, must index the text encoder's embedding table.
    if (vocabSize !== undefined && tokenizer.size > vocabSize) {
      throw new ModelError(
        `'${join(root, 'tokenizer')}' has ${tokenizer.size} tokens but the text encoder's vocab_size is ${vocabSize}`,
      );
    }
    const vaeScaleFactor = await deriveVaeScaleFactor(vaeConfig, vaeDecoder, latentChannels);
    const unetBlocks = unetConfig?.['block_out_channels'];
    // Without a config, assume SD's four UNet blocks (three downsamplings).
    const unetDownsampling = 2 ** ((Array.isArray(unetBlocks) && unetBlocks.length > 0 ? unetBlocks.length : 4) - 1);

    return new StableDiffusionBundle(
      root,
      device,
      modelIndex,
      tokenizer,
      textEncoder,
      unet,
      vaeDecoder,
      schedulerConfig,
      vaeScaleFactor,
      vaeScaleFactor * unetDownsampling,
      latentChannels,
      unetInChannels,
      vaeScalingFactor,
      sessionOptions,
    );
  }

  /** The encoder is opened on first use: text-to-image never needs it. */
  vaeEncoder(): Promise<VaeEncoder> {
    this.vaeEncoderPromise ??= (async () => {
      const path = join(this.dir, 'vae_encoder', 'model.onnx');
      requireFile(path, 'the VAE encoder ONNX model (needed for image inputs)');
      return new VaeEncoder(await ModelSession.create(path, this.sessionOptions), this.vaeScalingFactor);
    })();
    return this.vaeEncoderPromise;
  }

  async release(): Promise<void> {
    await this.textEncoder.session.release();
    await this.unet.session.release();
    await this.vaeDecoder.session.release();
    if (this.vaeEncoderPromise) await (await this.vaeEncoderPromise).session.release();
  }
}

/**
 * diffusers computes the factor as 2^(len(block_out_channels) − 1). Without a config we measure it: decode a
 * 1×C×4×4 latent and compare sizes, which costs one tiny decoder run.
 */
async function deriveVaeScaleFactor(
  vaeConfig: JsonObject | undefined,
  decoder: VaeDecoder,
  latentChannels: number,
): Promise<number> {
  const blocks = vaeConfig?.['block_out_channels'];
  if (Array.isArray(blocks) && blocks.length > 0) return 2 ** (blocks.length - 1);
  const { NDArray } = await import('../runtime/ndarray.js');
  const probe = await decoder.decodeRaw(NDArray.zeros([1, latentChannels, 4, 4]));
  const factor = probe.shape[2] / 4;
  if (!Number.isInteger(factor) || factor < 1) {
    throw new ModelError(`'${decoder.session.path}' maps a 4×4 latent to ${probe.shape[2]} pixels; expected a whole upsampling factor`);
  }
  return factor;
}

function requireFile(path: string, what: string): void {
  if (!existsSync(path)) throw new ModelError(`missing '${path}': expected ${what}`);
}

function readJson(path: string, what: string): JsonObject {
  requireFile(path, what);
  const parsed = parseJson(path);
  if (parsed === undefined) throw new ModelError(`'${path}' is not valid JSON: expected ${what}`);
  return parsed;
}

function readOptionalJson(path: string): JsonObject | undefined {
  return existsSync(path) ? parseJson(path) : undefined;
}

function parseJson(path: string): JsonObject | undefined {
  try {
    const value: unknown = JSON.parse(pythonJsonToJson(readFileSync(path, 'utf8')));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * diffusers writes configs with Python's json module, which emits bare Infinity/-Infinity/NaN (e.g. DPM-Solver's
 * `lambda_min_clipped: -Infinity`). JSON.parse rejects them; 1e999 parses to Infinity, and NaN becomes null.
 */
export function pythonJsonToJson(text: string): string {
  return text.replace(/([:[,]\s*)(-?)(Infinity|NaN)(?=\s*[,\]}])/g, (_m, before: string, sign: string, word: string) =>
    word === 'NaN' ? `${before}null` : `${before}${sign}1e999`,
  );
}

function readOptionalNumber(config: JsonObject | undefined, key: string): number | undefined {
  const value = config?.[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
