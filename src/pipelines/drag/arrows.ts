/**
 * Pictures of drag edits: panels side by side (input, output, …) with handle → target arrows drawn over them from
 * an SVG overlay composited by sharp. Small images are enlarged (nearest neighbour) first, so that arrows on a
 * 32–128 px image stay legible.
 */
import { extname } from 'node:path';
import sharp from 'sharp';
import { sideBySide, tensorToRgb8 } from '../../image/io.js';
import type { NDArray } from '../../runtime/ndarray.js';
import { UserError } from '../../util/errors.js';
import { ensureParentDir, writeFileAtomic } from '../../util/files.js';
import type { PixelPoint } from './points.js';

export interface PanelArrows {
  handles: readonly PixelPoint[];
  targets: readonly PixelPoint[];
  /** Where point tracking ended (drawn as hollow circles). */
  tracked?: readonly PixelPoint[];
}

export interface ArrowPictureOptions {
  /** Enlarge until the panels are at least this tall (default 256). */
  minHeight?: number;
  gap?: number;
}

/** PNG/JPEG/WebP bytes of the panels ([1, 3, H, W] in [0, 1]) with arrows on the panels that have some. */
export async function drawDragArrows(
  panels: readonly NDArray[],
  arrows: readonly (PanelArrows | undefined)[],
  format: 'png' | 'jpeg' | 'webp' = 'png',
  options: ArrowPictureOptions = {},
): Promise<Buffer> {
  const gap = options.gap ?? 8;
  const joined = sideBySide(panels, gap);
  const rgb = tensorToRgb8(joined, '[0,1]');
  const height = Math.max(...panels.map((p) => p.shape[2]));
  const k = Math.max(1, Math.ceil((options.minHeight ?? 256) / height));
  const width = rgb.width * k;
  const totalHeight = rgb.height * k;
  const shapes: string[] = [];
  const stroke = Math.max(1.5, k * 0.6);
  const radius = Math.max(3, k * 1.2);
  let x0 = 0;
  panels.forEach((panel, i) => {
    const set = arrows[i];
    if (set) {
      const at = (p: PixelPoint) => [(x0 + p[0] + 0.5) * k, (p[1] + 0.5) * k] as const;
      set.handles.forEach((h, j) => {
        const [hx, hy] = at(h);
        const [tx, ty] = at(set.targets[j]);
        // Stop at the target circle's edge so the arrowhead stays visible.
        const length = Math.hypot(tx - hx, ty - hy);
        const cut = length > radius ? radius / length : 0;
        const [ex, ey] = [tx - (tx - hx) * cut, ty - (ty - hy) * cut];
        shapes.push(
          `<line x1="${hx}" y1="${hy}" x2="${ex}" y2="${ey}" stroke="white" stroke-width="${stroke + 2}" opacity="0.7"/>`,
          `<line x1="${hx}" y1="${hy}" x2="${ex}" y2="${ey}" stroke="#ffd400" stroke-width="${stroke}" marker-end="url(#head)"/>`,
          `<circle cx="${hx}" cy="${hy}" r="${radius}" fill="#e01010" stroke="white" stroke-width="1"/>`,
          `<circle cx="${tx}" cy="${ty}" r="${radius}" fill="#1060e0" stroke="white" stroke-width="1"/>`,
        );
        const tracked = set.tracked?.[j];
        if (tracked) {
          const [px, py] = at(tracked);
          shapes.push(
            `<circle cx="${px}" cy="${py}" r="${radius * 1.6}" fill="none" stroke="#e01010" stroke-width="${stroke}"/>`,
          );
        }
      });
    }
    x0 += panel.shape[3] + gap;
  });
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${totalHeight}">` +
    `<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" orient="auto">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#ffd400"/></marker></defs>${shapes.join('')}</svg>`;
  const image = sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } })
    .resize(width, totalHeight, { kernel: 'nearest' })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }]);
  return format === 'png'
    ? image.png().toBuffer()
    : format === 'jpeg'
      ? image.jpeg({ quality: 95 }).toBuffer()
      : image.webp({ quality: 95 }).toBuffer();
}

/** {@link drawDragArrows} to a file (format from the extension), written atomically. */
export async function saveDragArrows(
  path: string,
  panels: readonly NDArray[],
  arrows: readonly (PanelArrows | undefined)[],
  options: ArrowPictureOptions = {},
): Promise<void> {
  const ext = extname(path).toLowerCase();
  const format =
    ext === '.png'
      ? 'png'
      : ext === '.jpg' || ext === '.jpeg'
        ? 'jpeg'
        : ext === '.webp'
          ? 'webp'
          : undefined;
  if (!format) throw new UserError(`cannot save '${path}': use .png, .jpg, .jpeg or .webp`);
  const bytes = await drawDragArrows(panels, arrows, format, options);
  await ensureParentDir(path);
  await writeFileAtomic(path, bytes);
}
