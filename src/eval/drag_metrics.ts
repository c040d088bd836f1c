/**
 * DragBench's measures of a drag (Shi et al., DragDiffusion), for every result on a case with drag points:
 *  - Mean Distance: each handle is found in the result by DIFT-style feature matching on the base UNet (t = 261,
 *    8 noise draws, cosine similarity over the whole image, on an up block other than the one the drag supervised:
 *    pipelines/drag/dift.ts), and its distance to the target measured in pixels; pooled over every point of every
 *    case, as DragBench does. The same again on a second network's features (the EmojiWorld judge's), so that one
 *    UNet's idea of correspondence does not grade itself;
 *  - Image Fidelity: 1 − LPIPS-style distance between input and result, whole image (judge features: no
 *    pretrained VGG/AlexNet can be downloaded here);
 *  - CLIP similarity: cosine of the input's and the result's CLIP image embeddings;
 *  - with EmojiWorld's ground truth, the moved sprite's distance from its true place, found by template matching
 *    (no network involved).
 */
import type { PerceptualDistance } from '../metrics/perceptual.js';
import type { DiftFeaturizer } from '../pipelines/drag/dift.js';
import { matchPoints } from '../pipelines/drag/dift.js';
import type { NDArray } from '../runtime/ndarray.js';
import { placement, type Scene, type SceneObject } from '../world/scene.js';
import { getSprite } from '../world/sprites.js';
import type { EvalCase } from './tasks.js';

export interface DragMeasures {
  /** Each handle's match to its target (px), on DIFT features and on the judge's. */
  diftDistances: number[];
  judgeDistances: number[];
  /** Ground truth only: the moved sprite's centre to its true centre (px); NaN without one. */
  spriteDistance: number;
  imageFidelity: number;
}

/** The features of a case's input, computed once for all the methods scored on it. */
const inputFeatures = new WeakMap<EvalCase, Promise<{ dift?: NDArray; judge: NDArray }>>();

/** DragBench's measures of `image` ([1, 3, H, W] in [0, 1]) as the result of dragging case `c`. */
export async function measureDrag(
  c: EvalCase & { drag: NonNullable<EvalCase['drag']> },
  image: NDArray,
  networks: { dift?: DiftFeaturizer; perceptual: PerceptualDistance },
): Promise<DragMeasures> {
  const { dift, perceptual } = networks;
  const { handles, targets } = c.drag;
  if (!inputFeatures.has(c))
    inputFeatures.set(
      c,
      (async () => ({
        dift: dift ? await dift.features(c.source, c.sourceCaption) : undefined,
        judge: (await perceptual.featureMap(c.source01)).map,
      }))(),
    );
  const source = await inputFeatures.get(c)!;
  const diftDistances =
    dift && source.dift
      ? matchPoints(
          source.dift,
          await dift.features(
            image.map((v) => 2 * v - 1),
            c.sourceCaption,
          ),
          handles,
          targets,
        ).distances
      : [];
  const judgeDistances = matchPoints(
    source.judge,
    (await perceptual.featureMap(image)).map,
    handles,
    targets,
  ).distances;
  const moved = c.targetScene && c.changedObjects?.target[0];
  return {
    diftDistances,
    judgeDistances,
    spriteDistance:
      c.targetScene && moved !== undefined
        ? (await locateSprite(image, c.targetScene, c.targetScene.objects[moved])).distance
        : NaN,
    imageFidelity: 1 - (await perceptual.distance(image, c.source01)),
  };
}

/**
 * Where the sprite of `object` (as drawn in `scene`: class, style, colour, size, flip) best matches `image`
 * ([1, 3, H, W] in [0, 1]): alpha-weighted mean squared error over positions where at least 60 % of the sprite's
 * alpha is inside the image, coarse (stride 2) then refined. Returns the centre found and its distance to the
 * object's true centre in `scene`.
 */
export async function locateSprite(
  image: NDArray,
  scene: Scene,
  object: SceneObject,
): Promise<{ centre: [number, number]; trueCentre: [number, number]; distance: number }> {
  const [, , height, width] = image.shape;
  const at = placement(scene, object);
  const sprite = await getSprite(object.class, object.style, object.colour, at.size);
  const n = at.size;
  const plane = height * width;
  const alpha = new Float32Array(n * n);
  const rgb = new Float32Array(3 * n * n);
  let totalAlpha = 0;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const sx = object.flipX ? n - 1 - x : x;
      const s = 4 * (y * n + sx);
      const k = y * n + x;
      alpha[k] = sprite.rgba[s + 3] / 255;
      totalAlpha += alpha[k];
      for (let c = 0; c < 3; c++) rgb[c * n * n + k] = sprite.rgba[s + c] / 255;
    }
  }
  const cost = (left: number, top: number): number => {
    let sum = 0;
    let weight = 0;
    for (let y = Math.max(0, -top); y < n && top + y < height; y++) {
      for (let x = Math.max(0, -left); x < n && left + x < width; x++) {
        const k = y * n + x;
        const a = alpha[k];
        if (a === 0) continue;
        const p = (top + y) * width + left + x;
        let d = 0;
        for (let c = 0; c < 3; c++) d += (image.data[c * plane + p] - rgb[c * n * n + k]) ** 2;
        sum += a * d;
        weight += a;
      }
    }
    return weight >= 0.6 * totalAlpha && weight > 0 ? sum / weight : Infinity;
  };
  const half = Math.floor(n / 2);
  let best = { left: at.left, top: at.top, cost: Infinity };
  for (let top = -half; top <= height - n + half; top += 2) {
    for (let left = -half; left <= width - n + half; left += 2) {
      const c = cost(left, top);
      if (c < best.cost) best = { left, top, cost: c };
    }
  }
  const coarse = best;
  for (let top = coarse.top - 2; top <= coarse.top + 2; top++) {
    for (let left = coarse.left - 2; left <= coarse.left + 2; left++) {
      const c = cost(left, top);
      if (c < best.cost) best = { left, top, cost: c };
    }
  }
  const centre: [number, number] = [best.left + n / 2, best.top + n / 2];
  const trueCentre: [number, number] = [at.left + n / 2, at.top + n / 2];
  return { centre, trueCentre, distance: Math.hypot(centre[0] - trueCentre[0], centre[1] - trueCentre[1]) };
}
