/**
 * The eval suite on files: EmojiWorld's cases written in PIE-Bench's layout (`editkit world export --format
 * piebench`), PIE-Bench folders read back as eval cases (`editkit eval --dataset DIR`), and DragBench folders as
 * action cases (`bench drag --dataset DIR`).
 */
import { findDragBenchCases, readDragBenchCase } from '../datasets/dragbench.js';
import { readPieBench, writePieBench } from '../datasets/piebench.js';
import { resolveSize } from '../image/io.js';
import { resizeBilinear, resizeBilinearChannels } from '../image/resample.js';
import type { PixelPoint } from '../pipelines/drag/points.js';
import { NDArray } from '../runtime/ndarray.js';
import type { SampleSceneOptions } from '../world/scene.js';
import { evalCase, isEvalTask, type EvalCase, type EvalTask } from './tasks.js';

/** Write `cases` cases of each task (EmojiWorld, ground truth not included: PIE-Bench has none). */
export async function exportPieBench(
  out: string,
  options: { tasks: readonly EvalTask[]; cases: number; scene: SampleSceneOptions },
): Promise<number> {
  const written = [];
  for (const task of options.tasks) {
    for (let k = 0; k < options.cases; k++) {
      const c = await evalCase(task, k, options.scene);
      written.push({
        id: c.id,
        task,
        image01: c.source01,
        sourcePrompt: c.sourceCaption,
        targetPrompt: c.targetCaption,
        instruction: c.instruction,
        region: c.region,
      });
    }
  }
  await writePieBench(out, written);
  return written.length;
}

/**
 * A PIE-Bench folder as eval cases, resized to `size`² (the model's size; PIE-Bench's images are 512²) with their
 * masks. Types without one of the seven tasks (0, "random") are skipped.
 */
export async function pieBenchEvalCases(dir: string, size: number, limit = Infinity): Promise<EvalCase[]> {
  const cases = await readPieBench(dir, limit);
  return cases
    .filter((c): c is typeof c & { task: EvalTask } => isEvalTask(c.task))
    .map((c) => {
      const [, , h, w] = c.image.shape;
      return h === size && w === size
        ? c
        : {
            ...c,
            image: resizeArea(c.image, size),
            mask: resizeArea(c.mask, size).map((v) => (v >= 0.5 ? 1 : 0)),
          };
    })
    .map((c) => ({
      id: c.id,
      task: c.task,
      worldTask: 'replace',
      seed: -1,
      instruction: c.instruction || `${c.sourcePrompt} → ${c.targetPrompt}`,
      sourceCaption: c.sourcePrompt,
      targetCaption: c.targetPrompt,
      source: c.image,
      source01: c.image.map((v) => v / 2 + 0.5),
      region: c.mask,
    }));
}

/**
 * A DragBench folder (`<case>/original_image.png`, `meta_data.pkl`, any depth) as action cases, with their points
 * and masks resized to `size`², or to each image's own size rounded down to the model's `multiple`. DragBench has
 * no ground truth: the caption is both source and target, and success and fidelity are n/a.
 */
export async function dragBenchEvalCases(
  root: string,
  options: { multiple: number; size?: number; limit?: number },
): Promise<EvalCase[]> {
  const cases: EvalCase[] = [];
  for (const dir of findDragBenchCases(root).slice(0, options.limit ?? Infinity)) {
    const c = await readDragBenchCase(dir, root);
    const [, , h, w] = c.image.shape;
    const size = options.size
      ? { width: options.size, height: options.size }
      : resolveSize(w, h, { multiple: options.multiple });
    const scale = (p: readonly [number, number]): PixelPoint => [
      (p[0] * size.width) / w,
      (p[1] * size.height) / h,
    ];
    const image = resizeBilinearChannels(c.image, size.height, size.width);
    cases.push({
      id: c.name,
      task: 'action',
      worldTask: 'move',
      seed: -1,
      instruction: c.prompt ? `drag (${c.prompt})` : 'drag',
      sourceCaption: c.prompt,
      targetCaption: c.prompt,
      source: image,
      source01: image.map((v) => v / 2 + 0.5),
      region: resizeBilinear(c.mask, size.height, size.width).map((v) => (v >= 0.5 ? 1 : 0)),
      drag: { handles: c.handles.map(scale), targets: c.targets.map(scale) },
    });
  }
  return cases;
}

/** Downscale by area averaging when the factor is whole (no aliasing), else bilinear. */
function resizeArea(x: NDArray, size: number): NDArray {
  const [, channels, h, w] = x.shape;
  if (h % size !== 0 || w % size !== 0) return resizeBilinearChannels(x, size, size);
  const fy = h / size;
  const fx = w / size;
  const out = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++)
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < w; xx++)
        out[(c * size + Math.floor(y / fy)) * size + Math.floor(xx / fx)] +=
          x.data[(c * h + y) * w + xx] / (fy * fx);
  return new NDArray(out, [1, channels, size, size]);
}
