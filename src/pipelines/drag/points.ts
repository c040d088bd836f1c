/**
 * Drag points: parsing the CLI's "x1,y1:x2,y2;…" form, validation against the image and the mask, and the map
 * from image pixels to the motion-supervision grid (half the image resolution, as DragDiffusion's sup_res).
 */
import { NDArray } from '../../runtime/ndarray.js';
import { UserError } from '../../util/errors.js';

/** A pixel position [x (column), y (row)], as EmojiWorld's drag ground truth writes it. */
export type PixelPoint = [number, number];

/** Handle k moves to target k. */
export interface DragPointPairs {
  handles: PixelPoint[];
  targets: PixelPoint[];
}

/** A position on the feature grid, [row, column]: the official code's (y, x) order. */
export type GridPoint = [number, number];

/**
 * Parse `"x1,y1:x2,y2;x3,y3:x4,y4"` (handle:target pairs separated by semicolons; whitespace ignored).
 * Every mistake names the pair and what is wrong with it.
 */
export function parseDragPoints(text: string): DragPointPairs {
  const pairs = text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (pairs.length === 0) {
    throw new UserError(`--points is empty: give handle:target pairs as "x1,y1:x2,y2;x3,y3:x4,y4"`);
  }
  const handles: PixelPoint[] = [];
  const targets: PixelPoint[] = [];
  pairs.forEach((pair, k) => {
    const parts = pair.split(':');
    if (parts.length !== 2 || parts.some((p) => p.trim() === '')) {
      throw new UserError(
        `point pair ${k + 1} ('${pair}') is incomplete: write it as handle:target, e.g. "10,20:30,20"`,
      );
    }
    const [handle, target] = parts.map((p, j) =>
      parsePoint(p, `${j === 0 ? 'handle' : 'target'} of pair ${k + 1}`),
    );
    handles.push(handle);
    targets.push(target);
  });
  return { handles, targets };
}

function parsePoint(text: string, what: string): PixelPoint {
  const parts = text.split(',').map((s) => s.trim());
  const values = parts.map(Number);
  if (parts.length !== 2 || parts.some((p) => p === '') || values.some((v) => !Number.isFinite(v))) {
    throw new UserError(
      `the ${what} ('${text.trim()}') must be two numbers "x,y" (pixels from the top-left corner)`,
    );
  }
  return [values[0], values[1]];
}

/** `"x1,y1:x2,y2;…"`, the inverse of {@link parseDragPoints}. */
export function formatDragPoints(points: DragPointPairs): string {
  return points.handles
    .map((h, k) => `${h[0]},${h[1]}:${points.targets[k][0]},${points.targets[k][1]}`)
    .join(';');
}

/**
 * Pairs must be complete, at least one, and every point inside the `width × height` image (0 ≤ x < width,
 * 0 ≤ y < height). A mask, when given, must match the image and let something change.
 */
export function validateDragInputs(
  points: DragPointPairs,
  width: number,
  height: number,
  mask?: NDArray,
): void {
  const { handles, targets } = points;
  if (handles.length !== targets.length) {
    throw new UserError(
      `drag points come in handle → target pairs: got ${handles.length} handles and ${targets.length} targets`,
    );
  }
  if (handles.length === 0) throw new UserError('give at least one handle → target pair of drag points');
  const check = (p: PixelPoint, what: string) => {
    if (!Array.isArray(p) || p.length !== 2 || !p.every(Number.isFinite)) {
      throw new UserError(`the ${what} must be [x, y] with finite numbers, got ${JSON.stringify(p)}`);
    }
    const [x, y] = p;
    if (x < 0 || x >= width || y < 0 || y >= height) {
      throw new UserError(
        `the ${what} (${x}, ${y}) is outside the ${width}×${height} image (x must be in [0, ${width}), y in [0, ${height}))`,
      );
    }
  };
  handles.forEach((h, k) => check(h, `handle of pair ${k + 1}`));
  targets.forEach((t, k) => check(t, `target of pair ${k + 1}`));
  if (mask) {
    if (
      mask.shape.length !== 4 ||
      mask.shape[0] !== 1 ||
      mask.shape[1] !== 1 ||
      mask.shape[2] !== height ||
      mask.shape[3] !== width
    ) {
      throw new UserError(
        `the mask must be [1, 1, ${height}, ${width}] to match the image, got [${mask.shape.join(', ')}]`,
      );
    }
    if (!mask.data.some((v) => v >= 0.5)) {
      throw new UserError(
        'the mask is all black: nothing may change; paint the region the drag may edit white',
      );
    }
  }
}

/** Points whose target lies outside the editable mask: the regulariser holds that region in place. */
export function targetsOutsideMask(points: DragPointPairs, mask: NDArray): number[] {
  const [, , height, width] = mask.shape;
  return points.targets.flatMap((t, k) => {
    const x = Math.min(width - 1, Math.max(0, Math.round(t[0])));
    const y = Math.min(height - 1, Math.max(0, Math.round(t[1])));
    return mask.data[y * width + x] >= 0.5 ? [] : [k];
  });
}

/** torch.round: halves go to the even neighbour. */
export function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const frac = v - floor;
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Image pixel → feature-grid cell, as the official code does (`round([y / H · h, x / W · w])`), clamped to the grid:
 * a point in the last pixel column can round to w, one past the grid, where the official code would index out
 * of bounds.
 */
export function toGrid(
  p: PixelPoint,
  imageWidth: number,
  imageHeight: number,
  gridWidth: number,
  gridHeight: number,
): GridPoint {
  const row = roundHalfEven((p[1] / imageHeight) * gridHeight);
  const col = roundHalfEven((p[0] / imageWidth) * gridWidth);
  return [Math.min(gridHeight - 1, Math.max(0, row)), Math.min(gridWidth - 1, Math.max(0, col))];
}

/** Feature-grid cell → image pixel [x, y], the inverse of {@link toGrid}'s scaling (cell k ↔ pixel k · H / h). */
export function fromGrid(
  p: GridPoint,
  imageWidth: number,
  imageHeight: number,
  gridWidth: number,
  gridHeight: number,
): PixelPoint {
  return [(p[1] * imageWidth) / gridWidth, (p[0] * imageHeight) / gridHeight];
}
