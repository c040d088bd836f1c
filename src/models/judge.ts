import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedDevice } from '../runtime/device.js';
import { NDArray } from '../runtime/ndarray.js';
import { ModelSession } from '../runtime/session.js';
import { ModelError } from '../util/errors.js';
import { resizeBilinearChannels } from '../image/resample.js';

export interface JudgeVerdict {
  /** Object classes whose probability passes the threshold. */
  objects: string[];
  objectProbabilities: Record<string, number>;
  background: string;
}

/**
 * EmojiWorld's independent judge (models/emoji-judge): a multi-label object classifier with a background head.
 * It is a different network from the CLIP that edits are optimised against, so "the judge says the edit worked"
 * is not the optimiser grading itself.
 */
export class EmojiJudge {
  private constructor(
    readonly session: ModelSession,
    readonly objectLabels: string[],
    readonly backgroundLabels: string[],
    readonly objectThreshold: number,
    readonly imageSize: number,
  ) {}

  static async load(dir: string, device: ResolvedDevice = 'cpu'): Promise<EmojiJudge> {
    const labelsPath = join(dir, 'labels.json');
    if (!existsSync(labelsPath)) throw new ModelError(`missing '${labelsPath}': expected the judge's class labels`);
    const labels = JSON.parse(readFileSync(labelsPath, 'utf8')) as { objects: string[]; backgrounds: string[]; object_threshold?: number };
    const configPath = join(dir, 'config.json');
    const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as { image_size?: number }) : {};
    const session = await ModelSession.create(join(dir, 'model.onnx'), { device });
    return new EmojiJudge(session, labels.objects, labels.backgrounds, labels.object_threshold ?? 0.5, config.image_size ?? 128);
  }

  /** Images [1, 3, H, W] in [0, 1]; resized to the judge's input size when needed. */
  async judge(image: NDArray): Promise<JudgeVerdict> {
    const pixels = toJudgeInput(image, this.imageSize);
    const out = await this.session.run({ pixel_values: pixels }, ['object_logits', 'background_logits']);
    const objectProbabilities: Record<string, number> = {};
    const objects: string[] = [];
    this.objectLabels.forEach((label, i) => {
      const p = 1 / (1 + Math.exp(-out.object_logits.data[i]));
      objectProbabilities[label] = p;
      if (p >= this.objectThreshold) objects.push(label);
    });
    let best = 0;
    out.background_logits.data.forEach((v, j) => {
      if (v > out.background_logits.data[best]) best = j;
    });
    return { objects, objectProbabilities, background: this.backgroundLabels[best] };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function toJudgeInput(image: NDArray, size: number): NDArray {
  return resizeBilinearChannels(image, size, size).map((v) => v * 2 - 1);
}
