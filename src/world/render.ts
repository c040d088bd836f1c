/**
 * The EmojiWorld renderer: scene spec → RGB image and masks. It is the single source of truth for pixels: the
 * CLI, the batch stream that feeds training, and the edit ground truth all call {@link renderScene}.
 *
 * Compositing is straight-alpha "over" in 8-bit sRGB with integer arithmetic (round half up), objects in list
 * order; flips mirror the sprite's columns. Masks are computed in floating point from the same alphas and
 * rounded once to uint8 (255 = fully the object).
 */
import sharp from 'sharp';

import { renderBackground } from './backgrounds.js';
import { placement, type Placement, type Scene } from './scene.js';
import { getSprite, type Sprite } from './sprites.js';

export interface RenderedScene {
  width: number;
  height: number;
  /** Interleaved RGB, row-major, `height × width × 3`. */
  image: Uint8Array;
  /** The background alone (what {@link image} shows wherever {@link union} is 0). */
  background: Uint8Array;
  /**
   * Per object, `height × width` uint8: how much of each pixel's colour comes from that object, i.e. its
   * alpha times the transparency of every object drawn over it (occlusion accounted for).
   */
  objectMasks: Uint8Array[];
  /** Per object, its own alpha where it lands, ignoring occlusion (the object's footprint). */
  footprints: Uint8Array[];
  /** Coverage by any object: 1 − Π(1 − alpha). Zero exactly where the pixel is pure background. */
  union: Uint8Array;
  placements: Placement[];
}

/** Render `scene` (validated, see scene.ts parseScene). */
export async function renderScene(scene: Scene): Promise<RenderedScene> {
  const { width, height } = scene;
  const background = renderBackground(scene.background.name, scene.background.seed, width, height);
  const image = background.slice();
  const placements = scene.objects.map((o) => placement(scene, o));
  const sprites = await Promise.all(
    scene.objects.map((o, i) => getSprite(o.class, o.style, o.colour, placements[i].size)),
  );
  const footprints = scene.objects.map((o, i) => {
    const alpha = new Uint8Array(width * height);
    drawSprite(image, alpha, width, height, sprites[i], placements[i], o.flipX);
    return alpha;
  });

  const pixels = width * height;
  const n = scene.objects.length;
  const objectMasks = Array.from({ length: n }, () => new Uint8Array(pixels));
  const union = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) {
    let remaining = 1;
    for (let i = n - 1; i >= 0; i--) {
      const a = footprints[i][p] / 255;
      if (a === 0) continue;
      objectMasks[i][p] = Math.round(255 * a * remaining);
      remaining *= 1 - a;
    }
    union[p] = Math.round(255 * (1 - remaining));
  }
  return { width, height, image, background, objectMasks, footprints, union, placements };
}

/**
 * The alpha of object `index` where it lands in the image, ignoring other objects (its footprint), without
 * rendering the scene; edits use it for their changed-region masks and drag points.
 */
export async function objectFootprint(scene: Scene, index: number): Promise<Uint8Array> {
  const object = scene.objects[index];
  if (object === undefined) throw new RangeError(`objectFootprint: scene has no object ${index}`);
  const at = placement(scene, object);
  const sprite = await getSprite(object.class, object.style, object.colour, at.size);
  const alpha = new Uint8Array(scene.width * scene.height);
  drawSprite(undefined, alpha, scene.width, scene.height, sprite, at, object.flipX);
  return alpha;
}

/**
 * Composite `sprite` over `image` (when given) at `at`, and record its alpha in `alpha`; the off-image part is
 * dropped.
 */
function drawSprite(
  image: Uint8Array | undefined,
  alpha: Uint8Array,
  width: number,
  height: number,
  sprite: Sprite,
  at: Placement,
  flipX: boolean,
): void {
  const { size, rgba } = sprite;
  const y0 = Math.max(0, at.top);
  const y1 = Math.min(height, at.top + size);
  const x0 = Math.max(0, at.left);
  const x1 = Math.min(width, at.left + size);
  for (let y = y0; y < y1; y++) {
    const sy = y - at.top;
    for (let x = x0; x < x1; x++) {
      const sx = flipX ? size - 1 - (x - at.left) : x - at.left;
      const s = 4 * (sy * size + sx);
      const a = rgba[s + 3];
      if (a === 0) continue;
      const p = y * width + x;
      alpha[p] = a;
      if (image === undefined) continue;
      const o = 3 * p;
      const inv = 255 - a;
      image[o] = Math.floor((image[o] * inv + rgba[s] * a + 127) / 255);
      image[o + 1] = Math.floor((image[o + 1] * inv + rgba[s + 1] * a + 127) / 255);
      image[o + 2] = Math.floor((image[o + 2] * inv + rgba[s + 2] * a + 127) / 255);
    }
  }
}

/** PNG bytes of interleaved 8-bit pixels with 1 (grey mask) or 3 (RGB) channels. */
export async function encodePng(
  data: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3,
): Promise<Buffer> {
  if (data.length !== width * height * channels) {
    throw new Error(`encodePng: ${data.length} bytes for ${width}×${height}×${channels}`);
  }
  let pipeline = sharp(data, { raw: { width, height, channels } });
  // Without this, libvips writes one-channel input as RGB; masks belong in 8-bit greyscale PNGs.
  if (channels === 1) pipeline = pipeline.toColourspace('b-w');
  // Fixed compression settings: PNG bytes (not only pixels) are then stable for a given sharp version.
  return pipeline.png({ compressionLevel: 9, adaptiveFiltering: false, palette: false }).toBuffer();
}
