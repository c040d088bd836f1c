import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { extractSubgraph, loadModel, sessionFromModel } from '../autodiff/index.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import type { ModelSession } from '../runtime/session.js';
import { downsampleAverage, resizeBilinear, resizeBilinearChannels } from '../image/resample.js';

/**
 * An LPIPS-style perceptual distance (Zhang et al. 2018, the "baseline" variant without learned per-channel
 * weights): activations of a CNN at several depths, unit-normalised over channels at each position, squared
 * differences averaged over positions and layers. 0 for identical images; roughly 0–2 otherwise.
 *
 * The network is EditKit's own EmojiWorld judge (no pretrained VGG/AlexNet can be downloaded here); a region mask
 * restricts the average to, e.g., the background outside an edit.
 */
export class PerceptualDistance {
  private constructor(
    private readonly session: ModelSession,
    readonly layers: readonly string[],
    private readonly inputName: string,
    private readonly inputSize: number,
  ) {}

  /** Features of `layers` of the ONNX model at `path` (an image classifier taking [-1, 1] RGB). */
  static async fromModel(
    path: string,
    layers: readonly string[],
    options: { device?: ResolvedDevice; inputName?: string; inputSize: number },
  ): Promise<PerceptualDistance> {
    const model = extractSubgraph(await loadModel(path), layers);
    const session = await sessionFromModel(model, { device: options.device ?? 'cpu' }, 'features');
    return new PerceptualDistance(session, layers, options.inputName ?? 'pixel_values', options.inputSize);
  }

  /**
   * The judge's stem and the output of each residual stage: for every `/body/body.N/` block the last ReLU
   * (after the residual add), which is what LPIPS takes from VGG (the end of each conv stage).
   */
  static async fromJudge(dir: string, device: ResolvedDevice = 'cpu'): Promise<PerceptualDistance> {
    const path = join(dir, 'model.onnx');
    const model = await loadModel(path);
    const nodes = model.graph?.node ?? [];
    const lastRelu = new Map<string, string>();
    for (const node of nodes) {
      if (node.opType !== 'Relu') continue;
      const match = /\/(stem|body\/body\.\d+)\//.exec(node.name ?? '');
      if (match) lastRelu.set(match[1], node.output![0]);
    }
    const layers = [...lastRelu.values()];
    if (layers.length === 0)
      throw new Error(`${path}: no stem/body ReLU activations found for perceptual features`);
    const configPath = join(dir, 'config.json');
    const config = existsSync(configPath)
      ? (JSON.parse(readFileSync(configPath, 'utf8')) as { image_size?: number })
      : {};
    return PerceptualDistance.fromModel(path, layers, { device, inputSize: config.image_size ?? 128 });
  }

  /** Images [1, 3, H, W] in [0, 1]. */
  async features(image: NDArray): Promise<NDArray[]> {
    const input = resizeBilinearChannels(image, this.inputSize, this.inputSize);
    const out = await this.session.run({ [this.inputName]: input.map((v) => v * 2 - 1) }, this.layers);
    return this.layers.map((name) => out[name]);
  }

  /**
   * A dense descriptor for point matching, on a network other than the diffusion model: the layers with a stride
   * of at most `maxStride` input pixels, each unit-normalised over channels per position (so each layer weighs the
   * same in a cosine similarity), upsampled bilinearly to the image size and stacked: [1, ΣC, H, W].
   */
  async featureMap(image: NDArray, maxStride = 8): Promise<{ map: NDArray; layers: string[] }> {
    const [, , height, width] = image.shape;
    const maps = await this.features(image);
    const kept: NDArray[] = [];
    const layers: string[] = [];
    maps.forEach((m, l) => {
      const [, c, h, w] = m.shape;
      if (this.inputSize / h > maxStride) return;
      const plane = h * w;
      const unit = new Float32Array(m.data.length);
      for (let p = 0; p < plane; p++) {
        let n = 0;
        for (let k = 0; k < c; k++) n += m.data[k * plane + p] ** 2;
        const inv = 1 / (Math.sqrt(n) + 1e-10);
        for (let k = 0; k < c; k++) unit[k * plane + p] = m.data[k * plane + p] * inv;
      }
      kept.push(resizeBilinearChannels(new NDArray(unit, [1, c, h, w]), height, width));
      layers.push(this.layers[l]);
    });
    if (kept.length === 0) throw new Error(`no perceptual layer has a stride ≤ ${maxStride}`);
    return { map: NDArray.concatChannels(kept), layers };
  }

  /** Distance between two images, optionally only where `region` ([1, 1, H, W], 1 = counted) is set. */
  async distance(a: NDArray, b: NDArray, region?: NDArray): Promise<number> {
    const [fa, fb] = [await this.features(a), await this.features(b)];
    let total = 0;
    for (let l = 0; l < fa.length; l++) {
      const [, c, h, w] = fa[l].shape;
      const weights = region ? layerRegion(region, h, w, this.inputSize) : undefined;
      let sum = 0;
      let count = 0;
      for (let p = 0; p < h * w; p++) {
        const weight = weights ? weights.data[p] : 1;
        if (weight <= 0) continue;
        let na = 0;
        let nb = 0;
        for (let k = 0; k < c; k++) {
          na += fa[l].data[k * h * w + p] ** 2;
          nb += fb[l].data[k * h * w + p] ** 2;
        }
        na = Math.sqrt(na) + 1e-10;
        nb = Math.sqrt(nb) + 1e-10;
        let d = 0;
        for (let k = 0; k < c; k++)
          d += (fa[l].data[k * h * w + p] / na - fb[l].data[k * h * w + p] / nb) ** 2;
        sum += weight * d;
        count += weight;
      }
      total += count > 0 ? sum / count : 0;
    }
    return total / fa.length;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The region at a layer's resolution: resized to the network input, then area-averaged onto the layer grid. */
function layerRegion(region: NDArray, h: number, w: number, inputSize: number): NDArray {
  const [, , height, width] = region.shape;
  const atInput =
    height === inputSize && width === inputSize ? region : resizeBilinear(region, inputSize, inputSize);
  return inputSize % h === 0 && inputSize % w === 0
    ? downsampleAverage(atInput, h, w)
    : resizeBilinear(atInput, h, w);
}
