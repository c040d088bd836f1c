import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resizeBilinearChannels } from '../image/resample.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import { IntArray, ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';
import { ClipTokenizer } from './tokenizer.js';

/** How images become `pixel_values`: resize to `size`², scale to [0, 1], normalise per channel. */
export interface ClipImageProcessing {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
}

interface ClipFiles {
  image: string;
  text: string;
  tokenizer: string;
  processing: ClipImageProcessing;
  maxLength: number | undefined;
}

const OPENAI_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new ModelError(`cannot read '${path}': ${error instanceof Error ? error.message : String(error)}`);
  }
}

function triple(value: unknown, fallback: [number, number, number]): [number, number, number] {
  return Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number')
    ? (value as [number, number, number])
    : fallback;
}

/** The number a preprocessor's `crop_size`/`size` gives (a number, or {height, width}/{shortest_edge}). */
function sizeOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (value && typeof value === 'object') {
    const v = value as Record<string, unknown>;
    for (const key of ['height', 'shortest_edge', 'width']) if (typeof v[key] === 'number') return v[key];
  }
  return undefined;
}

/**
 * Where a CLIP's files are, in either layout:
 *  - EditKit's (models/emoji-clip): `image_encoder/model.onnx`, `text_encoder/model.onnx`, `tokenizer/`, and the
 *    preprocessing in `config.json` (`image_size`, `image_mean`, `image_std`);
 *  - transformers/Optimum's, with separate towers and their projections: `vision_model.onnx` and `text_model.onnx`
 *    (at the top or under `onnx/`), `preprocessor_config.json`, and the tokenizer files at the top.
 */
function locate(dir: string): ClipFiles {
  if (!existsSync(dir)) throw new ModelError(`CLIP folder '${dir}' does not exist`);
  const bundled = join(dir, 'image_encoder', 'model.onnx');
  if (existsSync(bundled)) {
    const config = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};
    return {
      image: bundled,
      text: join(dir, 'text_encoder', 'model.onnx'),
      tokenizer: join(dir, 'tokenizer'),
      processing: {
        size: typeof config.image_size === 'number' ? config.image_size : 224,
        mean: triple(config.image_mean, OPENAI_MEAN),
        std: triple(config.image_std, OPENAI_STD),
      },
      maxLength: typeof config.max_length === 'number' ? config.max_length : undefined,
    };
  }
  for (const onnxDir of [dir, join(dir, 'onnx')]) {
    const image = join(onnxDir, 'vision_model.onnx');
    if (!existsSync(image)) continue;
    const pre = existsSync(join(dir, 'preprocessor_config.json'))
      ? readJson(join(dir, 'preprocessor_config.json'))
      : {};
    const config = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};
    const textConfig = (config.text_config ?? {}) as Record<string, unknown>;
    return {
      image,
      text: join(onnxDir, 'text_model.onnx'),
      tokenizer: dir,
      processing: {
        size: sizeOf(pre.crop_size) ?? sizeOf(pre.size) ?? 224,
        mean: triple(pre.image_mean, OPENAI_MEAN),
        std: triple(pre.image_std, OPENAI_STD),
      },
      maxLength:
        typeof textConfig.max_position_embeddings === 'number' ? textConfig.max_position_embeddings : undefined,
    };
  }
  throw new ModelError(
    `'${dir}' is not a CLIP folder: expected image_encoder/model.onnx (EditKit) or vision_model.onnx (transformers/Optimum)`,
  );
}

function l2Normalize(x: NDArray): NDArray {
  const [batch, dim] = x.shape;
  const out = new Float32Array(x.data.length);
  for (let b = 0; b < batch; b++) {
    let n = 0;
    for (let i = 0; i < dim; i++) n += x.data[b * dim + i] ** 2;
    const inv = 1 / Math.max(Math.sqrt(n), 1e-12);
    for (let i = 0; i < dim; i++) out[b * dim + i] = x.data[b * dim + i] * inv;
  }
  return new NDArray(out, [batch, dim]);
}

/**
 * A CLIP: image and text towers with their projections, each embedding a batch into the joint space. Used for the
 * CLIP score and the directional CLIP score of the benchmarks, and as the loss network of DiffusionCLIP (whose
 * gradient graph is built from {@link imageModelPath}).
 */
export class ClipModel {
  private constructor(
    readonly dir: string,
    readonly imageModelPath: string,
    readonly processing: ClipImageProcessing,
    private readonly imageSession: ModelSession,
    private readonly textSession: ModelSession | undefined,
    readonly tokenizer: ClipTokenizer | undefined,
    private readonly maxLength: number | undefined,
  ) {}

  /** Load a CLIP folder (either layout); `imageOnly` skips the text tower and tokenizer. */
  static async load(
    dir: string,
    options: { device?: ResolvedDevice; imageOnly?: boolean; intraOpNumThreads?: number } = {},
  ): Promise<ClipModel> {
    const files = locate(dir);
    const sessionOptions = { device: options.device ?? 'cpu', intraOpNumThreads: options.intraOpNumThreads };
    const imageSession = await ModelSession.create(files.image, sessionOptions);
    if (!imageSession.hasInput('pixel_values') || !imageSession.hasOutput('image_embeds')) {
      await imageSession.release();
      throw new ModelError(`'${files.image}' must map pixel_values to image_embeds (a CLIP vision model with projection)`);
    }
    let textSession: ModelSession | undefined;
    let tokenizer: ClipTokenizer | undefined;
    if (!options.imageOnly) {
      if (!existsSync(files.text)) {
        await imageSession.release();
        throw new ModelError(`'${dir}' has no text tower ('${files.text}')`);
      }
      textSession = await ModelSession.create(files.text, sessionOptions);
      tokenizer = await ClipTokenizer.fromDirectory(files.tokenizer);
    }
    return new ClipModel(dir, files.image, files.processing, imageSession, textSession, tokenizer, files.maxLength);
  }

  /** `pixel_values` for images [N, 3, H, W] in [0, 1]. */
  pixelValues(images: NDArray): NDArray {
    const { size, mean, std } = this.processing;
    const [n, channels, h, w] = images.shape;
    if (channels !== 3) throw new Error(`CLIP takes RGB images, got ${channels} channels`);
    const parts: NDArray[] = [];
    for (let i = 0; i < n; i++) {
      const one = new NDArray(images.data.subarray(i * 3 * h * w, (i + 1) * 3 * h * w), [1, 3, h, w]);
      const resized = h === size && w === size ? one : resizeBilinearChannels(one, size, size);
      const plane = size * size;
      parts.push(resized.map((v, k) => (v - mean[Math.floor(k / plane)]) / std[Math.floor(k / plane)]));
    }
    return NDArray.concat(parts);
  }

  /** Unit-length image embeddings [N, D] of images [N, 3, H, W] in [0, 1]. */
  async embedImages(images: NDArray): Promise<NDArray> {
    const out = await this.imageSession.run({ pixel_values: this.pixelValues(images) }, ['image_embeds']);
    return l2Normalize(out.image_embeds);
  }

  /** Unit-length text embeddings [N, D]. */
  async embedTexts(texts: readonly string[]): Promise<NDArray> {
    if (!this.textSession || !this.tokenizer) throw new Error('this CLIP was loaded without its text tower');
    const encoding = this.tokenizer.batchEncode(texts, { maxLength: this.maxLength });
    return this.embedTokens(encoding.inputIds, encoding.attentionMask, encoding.shape);
  }

  /** Unit-length text embeddings [N, D] of token ids (row-major [N, L], with their attention mask). */
  async embedTokens(inputIds: Int32Array, attentionMask: Int32Array, shape: [number, number]): Promise<NDArray> {
    if (!this.textSession) throw new Error('this CLIP was loaded without its text tower');
    const feeds: Record<string, NDArray | IntArray> = { input_ids: new IntArray(inputIds, shape) };
    if (this.textSession.hasInput('attention_mask')) feeds.attention_mask = new IntArray(attentionMask, shape);
    const out = await this.textSession.run(feeds, ['text_embeds']);
    return l2Normalize(out.text_embeds);
  }

  async release(): Promise<void> {
    await this.imageSession.release();
    await this.textSession?.release();
  }
}

/** Row-wise cosine similarity of unit embeddings [N, D] · [N, D] → N values. */
export function cosineRows(a: NDArray, b: NDArray): number[] {
  const [n, d] = a.shape;
  return Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let k = 0; k < d; k++) s += a.data[i * d + k] * b.data[i * d + k];
    return s;
  });
}

/**
 * The directional CLIP similarity (Gal et al. 2021; DiffusionCLIP's loss is 1 − this):
 * cos(E_I(edited) − E_I(source), E_T(target text) − E_T(source text)), per row.
 */
export function directionalSimilarity(
  sourceImages: NDArray,
  editedImages: NDArray,
  sourceTexts: NDArray,
  targetTexts: NDArray,
): number[] {
  const [n, d] = sourceImages.shape;
  return Array.from({ length: n }, (_, i) => {
    let dot = 0;
    let ni = 0;
    let nt = 0;
    for (let k = 0; k < d; k++) {
      const di = editedImages.data[i * d + k] - sourceImages.data[i * d + k];
      const dt = targetTexts.data[i * d + k] - sourceTexts.data[i * d + k];
      dot += di * dt;
      ni += di * di;
      nt += dt * dt;
    }
    return dot / Math.max(Math.sqrt(ni * nt), 1e-12);
  });
}
