import { NDArray } from '../runtime/ndarray.js';

/**
 * Bilinear resize of a [1, 1, h, w] map to [1, 1, H, W] with half-pixel centres (torch's
 * `F.interpolate(mode="bilinear", align_corners=False)`), for showing latent-resolution masks at image size.
 */
export function resizeBilinear(map: NDArray, height: number, width: number): NDArray {
  const [, , h, w] = map.shape;
  const out = new Float32Array(height * width);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max(((y + 0.5) * h) / height - 0.5, 0), h - 1);
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = Math.min(Math.max(((x + 0.5) * w) / width - 0.5, 0), w - 1);
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, w - 1);
      const fx = sx - x0;
      const top = map.data[y0 * w + x0] * (1 - fx) + map.data[y0 * w + x1] * fx;
      const bottom = map.data[y1 * w + x0] * (1 - fx) + map.data[y1 * w + x1] * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return new NDArray(out, [1, 1, height, width]);
}

/** Area-average downsampling of an image-space [1,1,H,W] map to the latent grid (H and W multiples of h, w). */
export function downsampleAverage(map: NDArray, height: number, width: number): NDArray {
  const [, , H, W] = map.shape;
  const fy = H / height;
  const fx = W / width;
  const out = new Float32Array(height * width);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      out[Math.floor(y / fy) * width + Math.floor(x / fx)] += map.data[y * W + x] / (fy * fx);
    }
  }
  return new NDArray(out, [1, 1, height, width]);
}

/** Bilinear resize of every channel of a [1, C, h, w] image to [1, C, height, width] (see resizeBilinear). */
export function resizeBilinearChannels(image: NDArray, height: number, width: number): NDArray {
  const [, channels, h, w] = image.shape;
  if (h === height && w === width) return image;
  const plane = h * w;
  return NDArray.concatChannels(
    Array.from({ length: channels }, (_, c) =>
      resizeBilinear(new NDArray(image.data.slice(c * plane, (c + 1) * plane), [1, 1, h, w]), height, width),
    ),
  );
}
