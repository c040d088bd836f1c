/**
 * DragDiffusion's feature side: which UNet tensor is the feature map, the bilinear geometry that maps it to the
 * supervision grid, the sampling weights motion supervision needs, and point tracking.
 *
 * The official code resizes the decoder feature map F (e.g. SD's up_blocks[2] output, 64×64) bilinearly to half
 * the image resolution (256×256) and then samples that map bilinearly again at q + d. Both steps are linear in F,
 * so every value motion supervision reads is a fixed, sparse combination of F's own cells. We precompute those
 * combinations on the host as dense [cells × points] matrices: the graph then needs one MatMul per operand instead
 * of a large resized map (640 × 256 × 256 floats for SD) and its gradient.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { graphOf, type ModelProto } from '../../autodiff/index.js';
import { pythonJsonToJson } from '../../models/bundle.js';
import { NDArray } from '../../runtime/ndarray.js';
import { ModelError, UserError } from '../../util/errors.js';
import type { GridPoint } from './points.js';

// -------------------------------------------------------------------------------------------------------------
// Which tensor
// -------------------------------------------------------------------------------------------------------------

/**
 * The output tensor of every up block, lowest resolution first, found from the node names torch.onnx gives
 * diffusers' modules (`/up_blocks.N/…`, possibly under a wrapper's prefix): for block N, the tensor made inside the block that a node outside it
 * reads, produced latest (the upsampler's conv, or the last resnet/attention of the final block).
 */
export function findUpBlockOutputs(model: ModelProto): string[] {
  const nodes = graphOf(model).node;
  const blockOf = (name: string | null | undefined): number | undefined => {
    // Exports of a wrapper module prefix the path (`/unet/up_blocks.0/…`).
    const m = /(?:^|\/)up_blocks\.(\d+)\//.exec(name ?? '');
    return m ? Number(m[1]) : undefined;
  };
  const producer = new Map<string, { block: number; index: number }>();
  nodes.forEach((n, index) => {
    const block = blockOf(n.name);
    if (block === undefined) return;
    for (const o of n.output) if (o) producer.set(o, { block, index });
  });
  const best = new Map<number, { tensor: string; index: number }>();
  const consider = (tensor: string, consumerBlock: number | undefined) => {
    const p = producer.get(tensor);
    if (!p || consumerBlock === p.block) return;
    // Only the next block (or the head after the last block) reads the main output; later blocks never do, but
    // shape bookkeeping sometimes crosses blocks.
    if (consumerBlock !== undefined && consumerBlock !== p.block + 1) return;
    const current = best.get(p.block);
    if (!current || p.index > current.index) best.set(p.block, { tensor, index: p.index });
  };
  for (const n of nodes) {
    const block = blockOf(n.name);
    for (const i of n.input) if (i) consider(i, block);
  }
  for (const o of graphOf(model).output) consider(o.name, undefined);
  const blocks = [...best.keys()].sort((a, b) => a - b);
  if (blocks.length === 0 || blocks.some((b, k) => b !== k)) return [];
  return blocks.map((b) => best.get(b)!.tensor);
}

/** `editkit_feature_tensors` from the UNet's config.json (EditKit's bundled models list their up-block outputs). */
export function configuredFeatureTensors(bundleDir: string): string[] | undefined {
  const path = join(bundleDir, 'unet', 'config.json');
  if (!existsSync(path)) return undefined;
  try {
    const config = JSON.parse(pythonJsonToJson(readFileSync(path, 'utf8'))) as Record<string, unknown>;
    const list = config['editkit_feature_tensors'];
    return Array.isArray(list) && list.every((v) => typeof v === 'string') ? (list as string[]) : undefined;
  } catch {
    return undefined;
  }
}

export interface FeatureChoice {
  /** The tensor name. */
  tensor: string;
  /** Up block index, when the tensor is one of the up-block outputs. */
  block?: number;
  /** How it was found. */
  source: 'option' | 'config' | 'node names';
}

/**
 * The feature tensor: `tensor` when given; else up block `block` (default: the second-to-last, the official code's
 * `unet_feature_idx = 3`, i.e. SD 1.5's up_blocks[2], the last block that ends in an upsampler and so the first at
 * the latent's full resolution), from the config's list or the node names.
 */
function upBlockTensors(
  model: ModelProto,
  bundleDir: string,
): { list: string[]; source: FeatureChoice['source'] } {
  const has = (name: string) => graphOf(model).node.some((n) => n.output.includes(name));
  const configured = configuredFeatureTensors(bundleDir)?.filter(has);
  return configured && configured.length > 0
    ? { list: configured, source: 'config' }
    : { list: findUpBlockOutputs(model), source: 'node names' };
}

/** How many up-block outputs the UNet has (from the config's list or the node names). */
export function upBlockCount(model: ModelProto, bundleDir: string): number {
  return upBlockTensors(model, bundleDir).list.length;
}

export function chooseFeatureTensor(
  model: ModelProto,
  bundleDir: string,
  options: { tensor?: string; block?: number } = {},
): FeatureChoice {
  const has = (name: string) =>
    graphOf(model).node.some((n) => n.output.includes(name)) ||
    graphOf(model).input.some((i) => i.name === name);
  if (options.tensor !== undefined) {
    if (!has(options.tensor)) {
      throw new UserError(
        `--feature-tensor '${options.tensor}' is not a tensor of '${join(bundleDir, 'unet', 'model.onnx')}'`,
      );
    }
    return { tensor: options.tensor, source: 'option' };
  }
  const { list, source } = upBlockTensors(model, bundleDir);
  if (list.length === 0) {
    throw new ModelError(
      `cannot find the UNet's up-block outputs in '${join(bundleDir, 'unet', 'model.onnx')}' (no editkit_feature_tensors in its config.json, no /up_blocks.N/ node names); name the decoder feature with --feature-tensor`,
    );
  }
  const block = options.block ?? Math.max(0, list.length - 2);
  if (!Number.isInteger(block) || block < 0 || block >= list.length) {
    throw new UserError(
      `the UNet has ${list.length} up blocks (0 to ${list.length - 1}); feature block ${block} does not exist`,
    );
  }
  return { tensor: list[block], block, source };
}

// -------------------------------------------------------------------------------------------------------------
// Bilinear geometry
// -------------------------------------------------------------------------------------------------------------

/** One input cell and its weight. */
export type Tap = readonly [index: number, weight: number];

/**
 * torch's `F.interpolate(mode='bilinear', align_corners=False)` along one axis, resizing `inSize` to `outSize`:
 * output o reads input x = max((o + 0.5) · in/out − 0.5, 0) from ⌊x⌋ and ⌊x⌋ + 1 (clamped).
 */
export function resizeTaps(inSize: number, outSize: number): Tap[][] {
  const scale = inSize / outSize;
  return Array.from({ length: outSize }, (_, o) => {
    const x = Math.max((o + 0.5) * scale - 0.5, 0);
    const i0 = Math.min(Math.floor(x), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l = x - i0;
    return i1 === i0
      ? [[i0, 1]]
      : [
          [i0, 1 - l],
          [i1, l],
        ];
  });
}

/**
 * The feature map's geometry: raw [C, h, w] resized to the supervision grid [gridH, gridW]. `sample` gives the
 * taps on the raw cells of one grid position, integer or fractional (bilinear between grid cells, borders
 * clamped).
 */
export class FeatureGrid {
  private readonly rows: Tap[][];
  private readonly cols: Tap[][];

  constructor(
    readonly channels: number,
    readonly height: number,
    readonly width: number,
    readonly gridHeight: number,
    readonly gridWidth: number,
  ) {
    this.rows = resizeTaps(height, gridHeight);
    this.cols = resizeTaps(width, gridWidth);
  }

  get cells(): number {
    return this.height * this.width;
  }

  /** Taps of grid position (row, col) on the raw cells (index = y · w + x); duplicates merged. */
  sample(row: number, col: number): Tap[] {
    const acc = new Map<number, number>();
    for (const [r, wr] of this.axis(row, this.rows)) {
      for (const [c, wc] of this.axis(col, this.cols)) {
        for (const [y, wy] of this.rows[r]) {
          for (const [x, wx] of this.cols[c]) {
            const k = y * this.width + x;
            acc.set(k, (acc.get(k) ?? 0) + wr * wc * wy * wx);
          }
        }
      }
    }
    return [...acc.entries()].filter(([, w]) => w !== 0);
  }

  /** Grid rows (or columns) and weights for a fractional coordinate; outside the grid reads the border. */
  private axis(v: number, taps: Tap[][]): Tap[] {
    const n = taps.length;
    const f = Math.floor(v);
    const l = v - f;
    const clamp = (i: number) => Math.min(n - 1, Math.max(0, i));
    if (l === 0) return [[clamp(f), 1]];
    return [
      [clamp(f), 1 - l],
      [clamp(f + 1), l],
    ];
  }

  /** The resized map's channel vector at an integer grid cell, from a raw feature map [1, C, h, w]. */
  vectorAt(features: NDArray, row: number, col: number): Float32Array {
    const plane = this.cells;
    const out = new Float32Array(this.channels);
    for (const [k, w] of this.sample(row, col)) {
      for (let c = 0; c < this.channels; c++) out[c] += w * features.data[c * plane + k];
    }
    return out;
  }

  /** The whole resized map [1, C, gridH, gridW] (tests and visualisation; the pipeline never needs it). */
  resize(features: NDArray): NDArray {
    const out = new Float32Array(this.channels * this.gridHeight * this.gridWidth);
    const gridPlane = this.gridHeight * this.gridWidth;
    for (let r = 0; r < this.gridHeight; r++) {
      for (let q = 0; q < this.gridWidth; q++) {
        const v = this.vectorAt(features, r, q);
        for (let c = 0; c < this.channels; c++) out[c * gridPlane + r * this.gridWidth + q] = v[c];
      }
    }
    return new NDArray(out, [1, this.channels, this.gridHeight, this.gridWidth]);
  }
}

// -------------------------------------------------------------------------------------------------------------
// Motion supervision
// -------------------------------------------------------------------------------------------------------------

export interface MotionSupervisionOptions {
  /** Patch radius r_m around each handle (official: 1). */
  radius: number;
  /** Handles closer than this to their target are skipped (official: 2 grid cells). */
  skipDistance?: number;
}

/** Dense sampling matrices for the gradient model's inputs (see motion_model.ts). */
export interface MotionSampling {
  /** [cells, points]: column p samples F at q_p + d (bilinear). */
  shifted: NDArray;
  /** [cells, points]: column p samples F at q_p (the stop-gradient reference). */
  source: NDArray;
  /** [points]: (2r + 1)² / (C · patch size) for active handles, 0 for padding and skipped handles. */
  weights: NDArray;
  /** Handles that contribute (not yet within skipDistance of their target). */
  active: boolean[];
}

/** Points per handle in the fixed-size matrices. */
export function pointsPerHandle(radius: number): number {
  return (2 * radius + 1) ** 2;
}

/**
 * The official motion supervision, as sampling matrices: for each handle p with target t (|t − p| ≥ 2), the square
 * patch of radius r around p, clipped to the grid ("boundary protection"), compared with the same patch shifted
 * by d = (t − p)/|t − p|: loss_i = (2r + 1)² · mean |F(q + d) − sg(F(q))| over channels and patch cells.
 */
export function motionSampling(
  grid: FeatureGrid,
  handles: readonly GridPoint[],
  targets: readonly GridPoint[],
  options: MotionSupervisionOptions,
): MotionSampling {
  const r = options.radius;
  const per = pointsPerHandle(r);
  const points = handles.length * per;
  const cells = grid.cells;
  const shifted = new Float32Array(cells * points);
  const source = new Float32Array(cells * points);
  const weights = new Float32Array(points);
  const active: boolean[] = [];
  handles.forEach((p, i) => {
    const t = targets[i];
    const dr = t[0] - p[0];
    const dc = t[1] - p[1];
    const norm = Math.hypot(dr, dc);
    const isActive = norm >= (options.skipDistance ?? 2);
    active.push(isActive);
    if (!isActive) return;
    const r1 = Math.max(0, Math.trunc(p[0]) - r);
    const r2 = Math.min(grid.gridHeight, Math.trunc(p[0]) + r + 1);
    const c1 = Math.max(0, Math.trunc(p[1]) - r);
    const c2 = Math.min(grid.gridWidth, Math.trunc(p[1]) + r + 1);
    const patch = (r2 - r1) * (c2 - c1);
    let k = i * per;
    for (let row = r1; row < r2; row++) {
      for (let col = c1; col < c2; col++, k++) {
        for (const [cell, w] of grid.sample(row + dr / norm, col + dc / norm))
          shifted[cell * points + k] += w;
        for (const [cell, w] of grid.sample(row, col)) source[cell * points + k] += w;
        weights[k] = per / (grid.channels * patch);
      }
    }
  });
  return {
    shifted: new NDArray(shifted, [cells, points]),
    source: new NDArray(source, [cells, points]),
    weights: new NDArray(weights, [points]),
    active,
  };
}

/**
 * Σ_p w_p Σ_c |F·shifted − R·source| for raw feature maps [1, C, h, w], with R = F by default (the value the graph
 * computes). A different R is the stop-gradient made explicit: the loss as a function of F with the reference
 * frozen, whose derivative the graph's gradient is.
 */
export function motionLoss(
  features: NDArray,
  sampling: MotionSampling,
  reference: NDArray = features,
): number {
  const [cells, points] = sampling.shifted.shape;
  const channels = features.size / cells;
  let total = 0;
  for (let p = 0; p < points; p++) {
    const w = sampling.weights.data[p];
    if (w === 0) continue;
    for (let c = 0; c < channels; c++) {
      let d = 0;
      for (let k = 0; k < cells; k++) {
        d +=
          features.data[c * cells + k] * sampling.shifted.data[k * points + p] -
          reference.data[c * cells + k] * sampling.source.data[k * points + p];
      }
      total += w * Math.abs(d);
    }
  }
  return total;
}

// -------------------------------------------------------------------------------------------------------------
// Point tracking
// -------------------------------------------------------------------------------------------------------------

/**
 * The official point tracking: for each handle, the cell within radius r_p of its current position (clipped to
 * the grid) whose feature vector (of the current map) is nearest in L1 to the handle's *original* feature (the
 * initial map at the initial handle). Ties go to the first cell in row-major order, as torch's argmin.
 */
export function trackPoints(
  grid: FeatureGrid,
  initialFeatures: readonly Float32Array[],
  currentMap: NDArray,
  handles: readonly GridPoint[],
  radius: number,
): GridPoint[] {
  return handles.map((p, i) => {
    const f0 = initialFeatures[i];
    const r1 = Math.max(0, Math.trunc(p[0]) - radius);
    const r2 = Math.min(grid.gridHeight, Math.trunc(p[0]) + radius + 1);
    const c1 = Math.max(0, Math.trunc(p[1]) - radius);
    const c2 = Math.min(grid.gridWidth, Math.trunc(p[1]) + radius + 1);
    let best: GridPoint = [r1, c1];
    let bestDistance = Infinity;
    for (let row = r1; row < r2; row++) {
      for (let col = c1; col < c2; col++) {
        const f = grid.vectorAt(currentMap, row, col);
        let d = 0;
        for (let c = 0; c < f.length; c++) d += Math.abs(f0[c] - f[c]);
        if (d < bestDistance) {
          bestDistance = d;
          best = [row, col];
        }
      }
    }
    return best;
  });
}

/** The official stopping test: every handle within 2 grid cells (Euclidean) of its target. */
export function handlesReached(
  handles: readonly GridPoint[],
  targets: readonly GridPoint[],
  distance = 2,
): boolean {
  return handles.every((p, i) => Math.hypot(p[0] - targets[i][0], p[1] - targets[i][1]) < distance);
}
