/**
 * Image I/O for the pipelines and the CLI, through sharp (libvips).
 *
 * Tensors are float32 NCHW with batch 1: images loaded for the VAE are `[1, 3, H, W]` in [-1, 1]; images going
 * out (decoded, `clamp(x/2 + 0.5, 0, 1)`, see docs/pipelines.md) are `[1, 3, H, W]` in [0, 1]; masks are
 * `[1, 1, H, W]` in [0, 1]. Pixel ↔ float conversion follows diffusers' VaeImageProcessor in float32
 * (`x/255`, `2x − 1`; out: `round(x · 255)` with ties to even), so a tensor made here matches one made by the
 * PyTorch reference from the same 8-bit pixels.
 *
 * Decoding:
 * - Any format sharp reads (PNG, JPEG, WebP, and also AVIF, GIF, TIFF, …); the first frame of animations.
 *   Colour is converted to 8-bit sRGB (embedded ICC profiles honoured, 16-bit PNGs reduced, CMYK converted).
 * - EXIF orientation is applied, so `originalWidth`/`originalHeight` and everything downstream are in the
 *   orientation the user sees in an image viewer.
 * - Transparency is composited over a background colour, white by default (`background`), as a viewer on a
 *   white page shows it, in sRGB (not linear light), as PIL's `alpha_composite` would. The model has no alpha
 *   channel; white rather than black keeps transparent logos and cut-outs from turning into dark blobs.
 * - Decompression bombs: an image whose header declares more than `maxInputPixels` pixels (default
 *   {@link DEFAULT_MAX_INPUT_PIXELS}, 8192 × 8192) is refused with a UserError before any pixel is decoded.
 * - Unreadable, unsupported or corrupt files give a UserError naming the file.
 *
 * Size policy ({@link resolveSize}); `multiple` is the VAE's downsampling factor, given by the caller:
 * - width and height given: used as is (each must be a positive multiple of `multiple`), the image is stretched
 *   to exactly that size (fit "fill", like diffusers' resize), without cropping;
 * - only one given: the other follows the source aspect ratio, rounded down to a multiple (at least one);
 * - neither: the source size rounded down to a multiple of `multiple` (at least one multiple).
 * Resampling is Lanczos-3, as diffusers' default `resample="lanczos"`. Rounding stretches the image by less
 * than one `multiple` per axis, which keeps every pixel of the picture (a crop would silently cut edges).
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';

import sharp from 'sharp';
import type { Metadata, OutputInfo, Sharp } from 'sharp';

import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { assertReadableFile, ensureParentDir, writeFileAtomic } from '../util/files.js';

/** Default decompression-bomb limit: 8192 × 8192 (64 Mi) pixels, several times any size a diffusion model uses. */
export const DEFAULT_MAX_INPUT_PIXELS = 8192 * 8192;

/** 0–255 sRGB components. */
export interface RgbColor {
  r: number;
  g: number;
  b: number;
}

/** Value range of an image tensor: the VAE's input range, or the display range. */
export type PixelRange = '[-1,1]' | '[0,1]';

/** Interleaved 8-bit RGB pixels, row-major. */
export interface Rgb8Image {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface SizeOptions {
  width?: number;
  height?: number;
  /** The VAE's downsampling factor; sizes are multiples of it. */
  multiple?: number;
}

export interface LoadImageOptions extends SizeOptions {
  /** What transparent pixels are composited over: a CSS colour string (`'#000'`, `'black'`) or 0–255 RGB. */
  background?: string | RgbColor;
  /** Refuse inputs with more pixels than this (decompression-bomb guard); `Infinity` disables the guard. */
  maxInputPixels?: number;
  /** The file's role in error messages, e.g. `'reference image'`. */
  label?: string;
}

export interface LoadedImage {
  /** `[1, 3, height, width]` in [-1, 1]. */
  tensor: NDArray;
  width: number;
  height: number;
  /** Size of the source after EXIF orientation, before resizing. */
  originalWidth: number;
  originalHeight: number;
}

export interface LoadMaskOptions {
  maxInputPixels?: number;
  label?: string;
}

export interface SaveImageOptions {
  /** JPEG/WebP quality 1–100 (default 95); ignored for PNG, which is lossless. */
  quality?: number;
}

/** Output size for a `srcWidth × srcHeight` source under the policy in this module's doc comment. */
export function resolveSize(
  srcWidth: number,
  srcHeight: number,
  { width, height, multiple = 8 }: SizeOptions = {},
): { width: number; height: number } {
  if (!Number.isInteger(multiple) || multiple < 1) {
    throw new RangeError(`resolveSize: multiple must be a positive integer, got ${multiple}`);
  }
  if (!(srcWidth > 0 && srcHeight > 0)) {
    throw new RangeError(`resolveSize: source size must be positive, got ${srcWidth}×${srcHeight}`);
  }
  const check = (name: string, value: number | undefined): void => {
    if (value === undefined) return;
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new UserError(
        `${name} must be a positive multiple of ${multiple} (the VAE's downsampling factor), got ${value}`,
      );
    }
  };
  check('width', width);
  check('height', height);
  const roundDown = (value: number): number => Math.max(multiple, Math.floor(value / multiple) * multiple);
  if (width !== undefined && height !== undefined) return { width, height };
  if (width !== undefined) return { width, height: roundDown((srcHeight * width) / srcWidth) };
  if (height !== undefined) return { width: roundDown((srcWidth * height) / srcHeight), height };
  return { width: roundDown(srcWidth), height: roundDown(srcHeight) };
}

/** Load an image as a `[1, 3, H, W]` tensor in [-1, 1], sized by {@link resolveSize}. */
export async function loadImage(path: string, options: LoadImageOptions = {}): Promise<LoadedImage> {
  const label = options.label ?? 'input image';
  const source = await openImage(path, label, options.maxInputPixels);
  const { width, height } = resolveSize(source.width, source.height, options);
  const background = options.background ?? '#ffffff';
  let pipeline: Sharp;
  try {
    pipeline = source.decoder().flatten({ background });
  } catch (error) {
    throw new UserError(`invalid background colour ${JSON.stringify(background)}: ${oneLine(error)}`, {
      cause: error,
    });
  }
  if (width !== source.width || height !== source.height) {
    pipeline = pipeline.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
  }
  const { data, info } = await decode(pipeline.removeAlpha(), path, label);
  if (info.channels !== 3 || info.width !== width || info.height !== height) {
    throw new Error(
      `loadImage: decoder returned ${info.width}×${info.height}×${info.channels}, expected ${width}×${height}×3`,
    );
  }
  return {
    tensor: rgb8ToTensor({ data, width, height }, '[-1,1]'),
    width,
    height,
    originalWidth: source.width,
    originalHeight: source.height,
  };
}

/**
 * Load a mask as `[1, 1, height, width]` in [0, 1] (white = 1), resized with Lanczos-3 to `width × height`
 * (values stay continuous; binarising is the pipeline's business, see docs/pipelines.md).
 *
 * Any image works. The mask is the Rec. 601 luma of the colour, `0.299 R + 0.587 G + 0.114 B` rounded exactly as
 * Pillow's `convert('L')` does (the reference's mask preprocessing), and alpha is ignored: a white stroke on a transparent layer that an editor
 * stored as white-on-black is read the way it looks once flattened. The exception is an image that is "only
 * alpha" — every pixel has the same colour and the alpha varies (a brush stroke exported as a transparency
 * mask) — where the colour carries nothing and alpha is used (opaque = 1).
 */
export async function loadMask(
  path: string,
  width: number,
  height: number,
  options: LoadMaskOptions = {},
): Promise<NDArray> {
  assertPositiveInteger('loadMask: width', width);
  assertPositiveInteger('loadMask: height', height);
  const label = options.label ?? 'mask image';
  const source = await openImage(path, label, options.maxInputPixels);
  const { data, info } = await decode(source.decoder(), path, label);
  const pixels = info.width * info.height;
  const channels = info.channels;
  if (channels !== 3 && channels !== 4) throw new Error(`loadMask: decoder returned ${channels} channels`);

  let grey = new Uint8Array(pixels);
  if (channels === 4 && isOnlyAlpha(data, pixels)) {
    for (let p = 0; p < pixels; p++) grey[p] = data[4 * p + 3];
  } else {
    for (let p = 0; p < pixels; p++) {
      const o = channels * p;
      // Pillow's fixed-point L24 (Convert.c), so a mask agrees with the reference's convert('L') pixel for pixel.
      grey[p] = (data[o] * 19595 + data[o + 1] * 38470 + data[o + 2] * 7471 + 0x8000) >> 16;
    }
  }
  if (info.width !== width || info.height !== height) {
    const resized = await sharp(grey, { raw: { width: info.width, height: info.height, channels: 1 } })
      .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
      .toColourspace('b-w')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (resized.info.channels !== 1)
      throw new Error(`loadMask: resize returned ${resized.info.channels} channels`);
    grey = new Uint8Array(resized.data.buffer, resized.data.byteOffset, resized.data.byteLength);
  }
  const out = new Float32Array(width * height);
  for (let p = 0; p < out.length; p++) out[p] = grey[p] / 255;
  return new NDArray(out, [1, 1, height, width]);
}

/** Encode a `[1, 3, H, W]` tensor in [0, 1] as PNG. */
export async function imageToPng(tensor: NDArray): Promise<Buffer> {
  return encode(tensorToRgb8(tensor, '[0,1]'), 'png', 100);
}

const FORMATS: Record<string, 'png' | 'jpeg' | 'webp'> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

/**
 * Save a `[1, 3, H, W]` tensor in [0, 1] to `path`, in the format its extension names (.png, .jpg, .jpeg,
 * .webp). The parent directory is created; the file is written atomically, so a failed encode or write never
 * leaves a partial image (or clobbers an existing one).
 */
/** The encoder for an output image path, from its extension; a UserError naming the choices otherwise. */
export function imageFormatOf(path: string): 'png' | 'jpeg' | 'webp' {
  const ext = extname(path).toLowerCase();
  const format = FORMATS[ext];
  if (format === undefined) {
    const got = ext === '' ? 'it has no extension' : `unknown extension '${ext}'`;
    throw new UserError(`cannot save image '${path}': ${got}; use .png, .jpg, .jpeg or .webp`);
  }
  return format;
}

export async function saveImage(
  tensor: NDArray,
  path: string,
  options: SaveImageOptions = {},
): Promise<void> {
  const format = imageFormatOf(path);
  const quality = options.quality ?? 95;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new UserError(`image quality must be an integer from 1 to 100, got ${quality}`);
  }
  const encoded = await encode(tensorToRgb8(tensor, '[0,1]'), format, quality);
  await ensureParentDir(path);
  await writeFileAtomic(path, encoded);
}

/**
 * `[1, C, H, W]` (or `[C, H, W]`) with C = 3, or C = 1 shown as grey, to interleaved 8-bit RGB.
 * Values are clamped to the range; NaN becomes 0 (black) rather than an exception, so a broken decode can
 * still be looked at.
 */
export function tensorToRgb8(tensor: NDArray, range: PixelRange): Rgb8Image {
  const { channels, height, width } = imageDims(tensor, 'tensorToRgb8');
  const plane = width * height;
  const src = tensor.data;
  const out = new Uint8Array(plane * 3);
  const signed = range === '[-1,1]';
  for (let c = 0; c < 3; c++) {
    const base = (channels === 1 ? 0 : c) * plane;
    for (let p = 0; p < plane; p++) {
      let x = src[base + p];
      if (signed) x = Math.fround(Math.fround(x / 2) + 0.5);
      out[3 * p + c] = unitToByte(x);
    }
  }
  return { data: out, width, height };
}

/** Interleaved 8-bit RGB to `[1, 3, H, W]` in `range`. */
export function rgb8ToTensor(image: Rgb8Image, range: PixelRange): NDArray {
  const { data, width, height } = image;
  const plane = width * height;
  if (data.length !== plane * 3) {
    throw new Error(
      `rgb8ToTensor: ${data.length} bytes for a ${width}×${height} RGB image (expected ${plane * 3})`,
    );
  }
  const lut = range === '[-1,1]' ? SIGNED_LUT : UNIT_LUT;
  const out = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    out[p] = lut[data[3 * p]];
    out[plane + p] = lut[data[3 * p + 1]];
    out[2 * plane + p] = lut[data[3 * p + 2]];
  }
  return new NDArray(out, [1, 3, height, width]);
}

/**
 * Place `[1, C, H, W]` panels in [0, 1] (C = 3, or 1 shown as grey) left to right, `gap` pixels apart, top
 * aligned, into one `[1, 3, maxH, ΣW + gaps]` image; gaps and the space under shorter panels are `fill`
 * (white by default).
 */
export function sideBySide(images: readonly NDArray[], gap = 8, fill = 1): NDArray {
  if (images.length === 0) throw new Error('sideBySide: no images');
  if (!Number.isInteger(gap) || gap < 0)
    throw new RangeError(`sideBySide: gap must be a non-negative integer`);
  const dims = images.map((image) => imageDims(image, 'sideBySide'));
  const height = Math.max(...dims.map((d) => d.height));
  const width = dims.reduce((sum, d) => sum + d.width, 0) + gap * (images.length - 1);
  const out = new Float32Array(3 * height * width).fill(fill);
  let x0 = 0;
  images.forEach((image, k) => {
    const { channels, height: h, width: w } = dims[k];
    for (let c = 0; c < 3; c++) {
      const srcBase = (channels === 1 ? 0 : c) * h * w;
      for (let y = 0; y < h; y++) {
        const row = image.data.subarray(srcBase + y * w, srcBase + (y + 1) * w);
        out.set(row, c * height * width + y * width + x0);
      }
    }
    x0 += w + gap;
  });
  return new NDArray(out, [1, 3, height, width]);
}

/**
 * Tint `image` (`[1, 3, H, W]` in [0, 1]) with `color` (RGB in [0, 1]) where `mask` (`[1, 1, H, W]` in
 * [0, 1]) is set: `image · (1 − o·m) + color · o·m`, so soft mask edges stay soft in the picture.
 */
export function overlayMask(
  image: NDArray,
  mask: NDArray,
  color: readonly [number, number, number] = [1, 0, 0],
  opacity = 0.5,
): NDArray {
  const { channels, height, width } = imageDims(image, 'overlayMask');
  const m = imageDims(mask, 'overlayMask');
  if (channels !== 3 || m.channels !== 1 || m.height !== height || m.width !== width) {
    throw new Error(
      `overlayMask: need an image [1, 3, H, W] and a mask [1, 1, H, W], got [${image.shape.join(', ')}] and [${mask.shape.join(', ')}]`,
    );
  }
  const plane = height * width;
  return image.map((v, i) => {
    const a = opacity * Math.min(1, Math.max(0, mask.data[i % plane]));
    return v * (1 - a) + color[Math.floor(i / plane)] * a;
  });
}

// ---------------------------------------------------------------------------------------------------------------

const UNIT_LUT = Float32Array.from({ length: 256 }, (_, v) => Math.fround(v / 255));
// 2x − 1 on float32 x, as the reference computes it, so that both sides hold bit-identical inputs.
const SIGNED_LUT = Float32Array.from(UNIT_LUT, (x) => Math.fround(2 * x - 1));

function unitToByte(x: number): number {
  if (!(x > 0)) return 0; // also NaN
  if (x >= 1) return 255;
  const y = Math.fround(x * 255);
  const floor = Math.floor(y);
  const frac = y - floor;
  // numpy's round(): ties to even.
  return frac > 0.5 || (frac === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

function imageDims(tensor: NDArray, who: string): { channels: number; height: number; width: number } {
  const shape = tensor.shape;
  const dims = shape.length === 4 && shape[0] === 1 ? shape.slice(1) : shape.length === 3 ? shape : undefined;
  if (dims === undefined || (dims[0] !== 1 && dims[0] !== 3) || dims[1] < 1 || dims[2] < 1) {
    throw new Error(`${who}: expected an image tensor [1, 3|1, H, W], got [${shape.join(', ')}]`);
  }
  return { channels: dims[0], height: dims[1], width: dims[2] };
}

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
}

function isOnlyAlpha(rgba: Uint8Array, pixels: number): boolean {
  const [r, g, b, a] = [rgba[0], rgba[1], rgba[2], rgba[3]];
  let alphaVaries = false;
  for (let p = 0; p < pixels; p++) {
    const o = 4 * p;
    if (rgba[o] !== r || rgba[o + 1] !== g || rgba[o + 2] !== b) return false;
    if (rgba[o + 3] !== a) alphaVaries = true;
  }
  return alphaVaries;
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
}

interface OpenedImage {
  /** Oriented size. */
  width: number;
  height: number;
  /** A fresh sharp pipeline on the file: oriented, in sRGB, with the pixel limit armed. */
  decoder: () => Sharp;
}

/**
 * Read the file and its header. The bytes are handed to sharp rather than the path because libvips' operation
 * cache is keyed by file name and can serve stale pixels for a file rewritten during the process (a watch loop,
 * a test); reading the file ourselves also turns filesystem errors into UserErrors up front.
 */
async function openImage(
  path: string,
  label: string,
  maxInputPixels = DEFAULT_MAX_INPUT_PIXELS,
): Promise<OpenedImage> {
  if (!(maxInputPixels > 0)) throw new RangeError(`maxInputPixels must be positive, got ${maxInputPixels}`);
  await assertReadableFile(path, label);
  const bytes = await readFile(path);
  let metadata: Metadata;
  try {
    // Header only, so reading it is safe whatever size the image claims; the limit is checked just below
    // with a message that says how large the image is.
    metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new UserError(`${label} '${path}' is not an image sharp can read: ${oneLine(error)}`, {
      cause: error,
    });
  }
  const { width, height } = metadata.autoOrient ?? metadata;
  if (!(width > 0 && height > 0)) throw new UserError(`${label} '${path}' has no pixels`);
  if (width * height > maxInputPixels) {
    throw new UserError(
      `${label} '${path}' is ${width}×${height} = ${width * height} pixels, more than the limit of ` +
        `${maxInputPixels} (a guard against decompression bombs); shrink it, or raise the limit if you trust the file`,
    );
  }
  const limitInputPixels = Number.isFinite(maxInputPixels) ? Math.floor(maxInputPixels) : false;
  return {
    width,
    height,
    decoder: () => sharp(bytes, { limitInputPixels, autoOrient: true }).toColourspace('srgb'),
  };
}

async function decode(
  pipeline: Sharp,
  path: string,
  label: string,
): Promise<{ data: Uint8Array; info: OutputInfo }> {
  try {
    const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), info };
  } catch (error) {
    throw new UserError(
      `${label} '${path}' could not be decoded (corrupt or truncated?): ${oneLine(error)}`,
      {
        cause: error,
      },
    );
  }
}

async function encode(image: Rgb8Image, format: 'png' | 'jpeg' | 'webp', quality: number): Promise<Buffer> {
  const pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  switch (format) {
    case 'png':
      return pipeline.png().toBuffer();
    case 'jpeg':
      // 4:4:4 because chroma subsampling smears exactly the thin edits (mask borders) users want to inspect.
      return pipeline.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
    case 'webp':
      return pipeline.webp({ quality }).toBuffer();
  }
}
