import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  DEFAULT_MAX_INPUT_PIXELS,
  imageToPng,
  loadImage,
  loadMask,
  overlayMask,
  resolveSize,
  rgb8ToTensor,
  saveImage,
  sideBySide,
  tensorToRgb8,
} from '../../src/image/io.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { UserError } from '../../src/util/errors.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'editkit-io-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Raw interleaved pixels from a per-pixel function. */
function pixels(
  width: number,
  height: number,
  channels: 3 | 4,
  fn: (x: number, y: number) => number[],
): Buffer {
  const out = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) out.set(fn(x, y), (y * width + x) * channels);
  }
  return out;
}

function raw(width: number, height: number, channels: 3 | 4, fn: (x: number, y: number) => number[]): Sharp {
  return sharp(pixels(width, height, channels, fn), { raw: { width, height, channels } });
}

/** Tensor value at channel c, row y, column x of a [1, C, H, W] tensor. */
function at(t: NDArray, c: number, y: number, x: number): number {
  const [, , h, w] = t.shape;
  return t.data[(c * h + y) * w + x];
}

describe('resolveSize', () => {
  it('rounds the source size down to the multiple when no size is given', () => {
    expect(resolveSize(1000, 750)).toEqual({ width: 1000, height: 744 });
    expect(resolveSize(1000, 750, { multiple: 64 })).toEqual({ width: 960, height: 704 });
    expect(resolveSize(5, 3)).toEqual({ width: 8, height: 8 });
  });

  it('uses both sizes as given', () => {
    expect(resolveSize(1000, 750, { width: 512, height: 512 })).toEqual({ width: 512, height: 512 });
    expect(resolveSize(10, 10, { width: 96, height: 32, multiple: 16 })).toEqual({ width: 96, height: 32 });
  });

  it('keeps the aspect ratio when only one side is given, rounding the other down', () => {
    expect(resolveSize(1000, 750, { width: 512 })).toEqual({ width: 512, height: 384 });
    expect(resolveSize(1000, 667, { width: 512 })).toEqual({ width: 512, height: 336 }); // 341.5 → 336
    expect(resolveSize(750, 1000, { height: 512 })).toEqual({ width: 384, height: 512 });
    expect(resolveSize(4000, 100, { width: 64 })).toEqual({ width: 64, height: 8 }); // at least one multiple
  });

  it('refuses sizes that are not positive multiples with a UserError', () => {
    for (const options of [
      { width: 500 },
      { height: 0 },
      { width: -8 },
      { width: 7.5 },
      { height: Number.NaN },
    ]) {
      expect(() => resolveSize(100, 100, options)).toThrow(UserError);
    }
    expect(() => resolveSize(100, 100, { width: 500 })).toThrow(
      "width must be a positive multiple of 8 (the VAE's downsampling factor), got 500",
    );
    expect(() => resolveSize(100, 100, { height: 72, multiple: 16 })).toThrow(
      /height must be a positive multiple of 16/,
    );
  });

  it('refuses a bad multiple as a programming error', () => {
    expect(() => resolveSize(100, 100, { multiple: 0 })).toThrow(RangeError);
  });
});

describe('loadImage', () => {
  it('composites transparency onto white by default, or the given background', async () => {
    const path = join(dir, 'alpha.png');
    // Left half opaque red, right half fully transparent green.
    await raw(16, 8, 4, (x) => (x < 8 ? [255, 0, 0, 255] : [0, 255, 0, 0]))
      .png()
      .toFile(path);
    const white = await loadImage(path);
    expect(white.tensor.shape).toEqual([1, 3, 8, 16]);
    expect([0, 1, 2].map((c) => at(white.tensor, c, 4, 2))).toEqual([1, -1, -1]);
    expect([0, 1, 2].map((c) => at(white.tensor, c, 4, 12))).toEqual([1, 1, 1]);
    const black = await loadImage(path, { background: '#000' });
    expect([0, 1, 2].map((c) => at(black.tensor, c, 4, 12))).toEqual([-1, -1, -1]);
    const blue = await loadImage(path, { background: { r: 0, g: 0, b: 255 } });
    expect([0, 1, 2].map((c) => at(blue.tensor, c, 4, 12))).toEqual([-1, -1, 1]);
  });

  it('composites half-transparent pixels', async () => {
    const path = join(dir, 'half.png');
    await raw(8, 8, 4, () => [0, 0, 0, 128])
      .png()
      .toFile(path);
    const { tensor } = await loadImage(path);
    const byte = tensorToRgb8(tensor, '[-1,1]').data[0];
    expect(Math.abs(byte - 127)).toBeLessThanOrEqual(1);
  });

  it('applies EXIF orientation (6 = rotate 90° clockwise)', async () => {
    const path = join(dir, 'rotated.jpg');
    // Stored 32×16: left half black, right half white. Displayed: 16×32, black on top.
    await raw(32, 16, 3, (x) => (x < 16 ? [0, 0, 0] : [255, 255, 255]))
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toFile(path);
    expect((await sharp(path).metadata()).orientation).toBe(6);
    const image = await loadImage(path);
    expect([image.width, image.height, image.originalWidth, image.originalHeight]).toEqual([16, 32, 16, 32]);
    expect(image.tensor.shape).toEqual([1, 3, 32, 16]);
    expect(at(image.tensor, 0, 4, 8)).toBeLessThan(-0.9);
    expect(at(image.tensor, 0, 28, 8)).toBeGreaterThan(0.9);
  });

  it('reads WebP and resizes per the size policy', async () => {
    const path = join(dir, 'photo.webp');
    await raw(30, 20, 3, (x, y) => [x * 8, y * 12, 100])
      .webp({ lossless: true })
      .toFile(path);
    const native = await loadImage(path);
    expect([native.width, native.height, native.originalWidth, native.originalHeight]).toEqual([
      24, 16, 30, 20,
    ]);
    expect(native.tensor.shape).toEqual([1, 3, 16, 24]);
    const byWidth = await loadImage(path, { width: 16 });
    expect([byWidth.width, byWidth.height]).toEqual([16, 8]); // 20·16/30 = 10.7 → 8
    const both = await loadImage(path, { width: 64, height: 32, multiple: 32 });
    expect(both.tensor.shape).toEqual([1, 3, 32, 64]);
    await expect(loadImage(path, { width: 20 })).rejects.toThrow(UserError);
  });

  it('keeps the pixels exactly when no resize is needed', async () => {
    const path = join(dir, 'exact.png');
    const source = pixels(8, 8, 3, (x, y) => [x * 31, y * 17, (x * y) % 256]);
    await sharp(source, { raw: { width: 8, height: 8, channels: 3 } })
      .png()
      .toFile(path);
    const { tensor } = await loadImage(path);
    expect(tensor.data.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(Buffer.from(tensorToRgb8(tensor, '[-1,1]').data).equals(source)).toBe(true);
  });

  it('refuses images above the pixel limit with a UserError, before decoding', async () => {
    const path = join(dir, 'big.png');
    await raw(300, 300, 3, () => [10, 20, 30])
      .png()
      .toFile(path);
    await expect(loadImage(path, { maxInputPixels: 1000 })).rejects.toThrow(
      /is 300×300 = 90000 pixels, more than the limit of 1000/,
    );
    await expect(loadMask(path, 8, 8, { maxInputPixels: 1000 })).rejects.toBeInstanceOf(UserError);
    await expect(loadImage(path, { maxInputPixels: 90_000 })).resolves.toBeDefined();
  });

  it('refuses a decompression bomb (tiny file, huge declared size) under the default limit', async () => {
    const path = join(dir, 'bomb.png');
    await writeFile(
      path,
      withPngSize(
        await raw(8, 8, 3, () => [0, 0, 0])
          .png()
          .toBuffer(),
        100_000,
        100_000,
      ),
    );
    const error = await loadImage(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toContain(`more than the limit of ${DEFAULT_MAX_INPUT_PIXELS}`);
  });

  it('turns missing, unreadable and corrupt files into one-line UserErrors', async () => {
    const missing = join(dir, 'missing.png');
    await expect(loadImage(missing)).rejects.toThrow(
      new UserError(`input image '${missing}' does not exist`),
    );
    await expect(loadImage(missing, { label: 'reference image' })).rejects.toThrow(/^reference image/);
    await expect(loadImage(dir)).rejects.toThrow(/is a directory/);

    const garbage = join(dir, 'garbage.png');
    await writeFile(garbage, 'this is not an image');
    await expect(loadImage(garbage)).rejects.toThrow(/is not an image sharp can read/);

    const truncated = join(dir, 'truncated.png');
    const png = await raw(64, 64, 3, (x, y) => [x * 4, y * 4, (x * y) % 256])
      .png()
      .toBuffer();
    await writeFile(truncated, png.subarray(0, Math.floor(png.length / 2)));
    const error = await loadImage(truncated).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toMatch(/^input image '.*truncated\.png' /);
    expect((error as Error).message).not.toContain('\n');
  });

  it('refuses an invalid background colour', async () => {
    const path = join(dir, 'background.png');
    await raw(8, 8, 4, () => [0, 0, 0, 0])
      .png()
      .toFile(path);
    await expect(loadImage(path, { background: 'not-a-colour' })).rejects.toThrow(
      /invalid background colour/,
    );
  });
});

describe('loadMask', () => {
  it('reads luminance (white = 1) and resizes to the requested size', async () => {
    const path = join(dir, 'mask.png');
    await raw(32, 32, 3, (x, y) => (x >= 8 && x < 24 && y >= 8 && y < 24 ? [255, 255, 255] : [0, 0, 0]))
      .png()
      .toFile(path);
    const mask = await loadMask(path, 16, 16);
    expect(mask.shape).toEqual([1, 1, 16, 16]);
    expect(at(mask, 0, 8, 8)).toBe(1);
    expect(at(mask, 0, 0, 0)).toBe(0);
    expect(mask.data.every((v) => v >= 0 && v <= 1)).toBe(true);
  });

  it("uses PIL's luma weights and ignores alpha when the colour varies", async () => {
    const path = join(dir, 'coloured.png');
    // Red, green, blue, white pixels; alpha varies but is ignored because colour carries the mask.
    const colours = [
      [255, 0, 0, 0],
      [0, 255, 0, 255],
      [0, 0, 255, 10],
      [255, 255, 255, 0],
    ];
    await raw(4, 1, 4, (x) => colours[x])
      .png()
      .toFile(path);
    const mask = await loadMask(path, 4, 1);
    expect([...mask.data]).toEqual([76, 150, 29, 255].map((v) => Math.fround(v / 255)));
  });

  it('uses alpha when the image is only alpha (one colour everywhere)', async () => {
    const path = join(dir, 'alpha-mask.png');
    await raw(16, 8, 4, (x) => [0, 0, 0, x < 8 ? 255 : 0])
      .png()
      .toFile(path);
    const mask = await loadMask(path, 16, 8);
    expect(at(mask, 0, 4, 2)).toBe(1);
    expect(at(mask, 0, 4, 12)).toBe(0);
  });

  it('applies EXIF orientation', async () => {
    const path = join(dir, 'mask-rotated.jpg');
    await raw(32, 16, 3, (x) => (x < 16 ? [255, 255, 255] : [0, 0, 0]))
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toFile(path);
    const mask = await loadMask(path, 16, 32);
    expect(at(mask, 0, 4, 8)).toBeGreaterThan(0.95);
    expect(at(mask, 0, 28, 8)).toBeLessThan(0.05);
  });
});

describe('pixel conversion', () => {
  const all = Uint8Array.from({ length: 256 * 3 }, (_, i) => i % 256);
  const image = { data: all, width: 16, height: 16 };

  it('round-trips every 8-bit value through both ranges', () => {
    for (const range of ['[0,1]', '[-1,1]'] as const) {
      const tensor = rgb8ToTensor(image, range);
      expect(tensor.shape).toEqual([1, 3, 16, 16]);
      expect(Buffer.from(tensorToRgb8(tensor, range).data).equals(Buffer.from(all))).toBe(true);
    }
  });

  it('maps like diffusers: x/255, 2x − 1, round half to even, clamp; NaN → 0', () => {
    const t = rgb8ToTensor({ data: Uint8Array.from([0, 128, 255]), width: 1, height: 1 }, '[-1,1]');
    expect([...t.data]).toEqual([-1, Math.fround(2 * Math.fround(128 / 255) - 1), 1]);
    const out = tensorToRgb8(new NDArray(Float32Array.from([0.5, 2, Number.NaN]), [1, 3, 1, 1]), '[0,1]');
    expect([...out.data]).toEqual([128, 255, 0]); // 127.5 → 128 (even)
    const grey = tensorToRgb8(new NDArray(Float32Array.from([-1, 0]), [1, 1, 1, 2]), '[-1,1]');
    expect([...grey.data]).toEqual([0, 0, 0, 128, 128, 128]);
  });

  it('refuses shapes that are not images', () => {
    expect(() => tensorToRgb8(NDArray.zeros([1, 4, 2, 2]), '[0,1]')).toThrow(/expected an image tensor/);
    expect(() => tensorToRgb8(NDArray.zeros([2, 3, 2, 2]), '[0,1]')).toThrow(/expected an image tensor/);
  });
});

describe('imageToPng / saveImage', () => {
  const tensor = rgb8ToTensor(
    { data: pixels(8, 4, 3, (x, y) => [x * 30, y * 60, 200]), width: 8, height: 4 },
    '[0,1]',
  );

  it('encodes PNG losslessly', async () => {
    const png = await imageToPng(tensor);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels, (await sharp(png).metadata()).format]).toEqual([
      8,
      4,
      3,
      'png',
    ]);
    expect(data.equals(Buffer.from(tensorToRgb8(tensor, '[0,1]').data))).toBe(true);
  });

  it.each([
    ['out.png', 'png'],
    ['out.JPG', 'jpeg'],
    ['sub/dir/out.jpeg', 'jpeg'],
    ['out.webp', 'webp'],
  ])('saves %s as %s, creating directories', async (name, format) => {
    const path = join(dir, 'save', name);
    await saveImage(tensor, path);
    const meta = await sharp(path).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual([format, 8, 4]);
  });

  it('refuses unknown extensions before writing anything', async () => {
    const out = join(dir, 'unknown');
    await mkdir(out);
    await expect(saveImage(tensor, join(out, 'out.gif'))).rejects.toThrow(
      /unknown extension '\.gif'; use \.png, \.jpg, \.jpeg or \.webp/,
    );
    await expect(saveImage(tensor, join(out, 'out'))).rejects.toThrow(UserError);
    await expect(saveImage(tensor, join(out, 'out.png'), { quality: 0 })).rejects.toThrow(UserError);
    expect(await readdir(out)).toEqual([]);
  });

  it('leaves no file, no temporary file, and an existing file intact when encoding fails', async () => {
    const out = join(dir, 'failing');
    await mkdir(out);
    const existing = join(out, 'keep.png');
    await writeFile(existing, 'previous result');
    const broken = NDArray.zeros([1, 3, 0, 4]); // nothing to encode
    await expect(saveImage(broken, join(out, 'new.png'))).rejects.toThrow();
    await expect(saveImage(broken, existing)).rejects.toThrow();
    expect(await readdir(out)).toEqual(['keep.png']);
    expect(await readFile(existing, 'utf8')).toBe('previous result');
  });
});

describe('sideBySide / overlayMask', () => {
  it('lays panels out left to right with a white gap, top aligned, grey for 1-channel panels', () => {
    const a = NDArray.full([1, 3, 2, 3], 0.25);
    const b = NDArray.full([1, 1, 4, 2], 0);
    const out = sideBySide([a, b], 1);
    expect(out.shape).toEqual([1, 3, 4, 6]);
    const row = (c: number, y: number): number[] => Array.from({ length: 6 }, (_, x) => at(out, c, y, x));
    expect(row(0, 0)).toEqual([0.25, 0.25, 0.25, 1, 0, 0]);
    expect(row(2, 3)).toEqual([1, 1, 1, 1, 0, 0]); // under the shorter panel
    expect(sideBySide([a]).shape).toEqual([1, 3, 2, 3]);
    expect(() => sideBySide([])).toThrow();
  });

  it('tints where the mask is set, in proportion to the mask', () => {
    const image = NDArray.full([1, 3, 1, 3], 0.5);
    const mask = new NDArray(Float32Array.from([0, 0.5, 1]), [1, 1, 1, 3]);
    const out = overlayMask(image, mask, [1, 0, 0], 0.5);
    expect(Array.from({ length: 3 }, (_, x) => at(out, 0, 0, x))).toEqual([0.5, 0.625, 0.75]);
    expect(Array.from({ length: 3 }, (_, x) => at(out, 1, 0, x))).toEqual([0.5, 0.375, 0.25]);
    expect(() => overlayMask(image, NDArray.zeros([1, 1, 2, 3]))).toThrow(/overlayMask/);
  });
});

/** Rewrite a PNG's IHDR to claim another size (with a valid CRC), as a decompression bomb would. */
function withPngSize(png: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(png);
  // Signature (8) + length (4) + "IHDR" (4), then width and height; the CRC covers type and data (4 + 13).
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
