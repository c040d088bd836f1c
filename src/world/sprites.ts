/**
 * Rasterised emoji sprites: sharp (libvips + librsvg) renders the SVG at the sprite's pixel size.
 *
 * Rendering at the target size (rather than resampling one large bitmap) keeps small sprites as sharp as the
 * vector art allows. librsvg output is a pure function of the SVG and the library build, so a sprite is
 * byte-identical across runs; across machines it is identical for the same sharp/libvips binaries, which is
 * what the golden-hash test pins.
 */
import sharp from 'sharp';

import { resolveColour, type Style } from './catalog.js';
import { recolourSvg } from './recolour.js';

/** Straight (non-premultiplied) RGBA, row-major, `size × size`. */
export interface Sprite {
  size: number;
  rgba: Uint8Array;
}

/** Sprites kept in memory; at most a few MB for the sizes a 256 px scene uses. */
const CACHE_LIMIT = 2048;
// Insertion-ordered Map as an LRU; the value is a promise so that concurrent renders of a new sprite share
// one rasterisation.
const cache = new Map<string, Promise<Sprite>>();

export const MIN_SPRITE_PX = 4;
export const MAX_SPRITE_PX = 512;

/** The sprite of `className` in `style` and `colour` (undefined = default), `size` pixels square, unflipped. */
export function getSprite(
  className: string,
  style: Style,
  colour: string | undefined,
  size: number,
): Promise<Sprite> {
  if (!Number.isInteger(size) || size < MIN_SPRITE_PX || size > MAX_SPRITE_PX) {
    throw new RangeError(
      `sprite size must be an integer from ${MIN_SPRITE_PX} to ${MAX_SPRITE_PX}, got ${size}`,
    );
  }
  const key = `${className}|${style}|${colour ?? ''}|${size}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const promise = rasterise(className, style, colour, size);
  cache.set(key, promise);
  promise.catch(() => cache.delete(key));
  if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  return promise;
}

/** Forget all cached sprites (tests, or a long-lived process that wants its memory back). */
export function clearSpriteCache(): void {
  cache.clear();
}

/** The SVG text drawn for a class/style/colour, recolouring applied; exposed for inspection tools. */
export function spriteSvg(className: string, style: Style, colour: string | undefined): string {
  const { variant, recolour } = resolveColour(className, colour);
  const svg = style === 'colour' ? variant.colour : variant.flat;
  if (svg === undefined) throw new RangeError(`class '${className}' has no '${style}' artwork`);
  return recolour === undefined ? svg : recolourSvg(svg, recolour);
}

async function rasterise(
  className: string,
  style: Style,
  colour: string | undefined,
  size: number,
): Promise<Sprite> {
  const svg = spriteSvg(className, style, colour).replace('<svg ', `<svg width="${size}" height="${size}" `);
  const { data, info } = await sharp(Buffer.from(svg), { density: 72 })
    .ensureAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 4) {
    throw new Error(
      `sprite ${className}/${style}: librsvg returned ${info.width}×${info.height}×${info.channels}, expected ${size}×${size}×4`,
    );
  }
  return { size, rgba: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
