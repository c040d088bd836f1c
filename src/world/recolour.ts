/**
 * Colour variants made by recolouring artwork, for classes whose emoji exists in one colour only (a red car
 * becomes a blue car). A documented approximation of "the same object in another colour", good enough for a
 * colour-change edit's ground truth.
 *
 * It works on the SVG's hex colours, before rasterisation, not on pixels: gradients and anti-aliased edges
 * stay as the artist drew them, and a recoloured sprite is as crisp as the original. Only colours whose hue
 * lies within `band` degrees of `from` (and that are saturated enough to have a hue) change, so tyres,
 * windows, eyes and outlines keep theirs. The changed colours move as a group: the hue goes to `to` (keeping
 * half of each colour's offset from the band centre), saturation is scaled and lightness shifted so that the
 * group's mean reaches the target `sat`/`light`, which keeps the shading's contrast. A mean is taken per SVG
 * because the flat and the 3D artwork of one emoji shade differently.
 */
import type { Recolour } from './catalog.js';

/** Saturation below which a colour counts as grey and is never recoloured. */
const MIN_SATURATION = 0.2;

const HEX = /#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b/g;

export function recolourSvg(svg: string, recolour: Recolour): string {
  // Reference saturation/lightness: the mean over the in-band colour occurrences of this SVG.
  let sumS = 0;
  let sumL = 0;
  let count = 0;
  for (const match of svg.matchAll(HEX)) {
    const hsl = inBand(expand(match[1]), recolour);
    if (hsl === undefined) continue;
    sumS += hsl[1];
    sumL += hsl[2];
    count++;
  }
  if (count === 0) return svg;
  const satScale = recolour.sat / (sumS / count);
  const lightShift = recolour.light - sumL / count;
  return svg.replace(HEX, (whole, hex: string) => {
    const hsl = inBand(expand(hex), recolour);
    if (hsl === undefined) return whole;
    const [h, s, l] = hsl;
    const hue = wrapHue(recolour.to + hueDistance(h, recolour.from) / 2);
    const [r, g, b] = hslToRgb(hue, clamp(s * satScale, 0, 1), clamp(l + lightShift, 0.04, 0.96));
    return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
  });
}

function expand(hex: string): string {
  return hex.length === 3 ? hex.replace(/(.)/g, '$1$1') : hex;
}

/** HSL of `hex` if it is recoloured under `recolour`, else undefined. */
function inBand(hex: string, { from, band }: Recolour): [number, number, number] | undefined {
  const n = Number.parseInt(hex, 16);
  const hsl = rgbToHsl((n >> 16) & 255, (n >> 8) & 255, n & 255);
  const [h, s, l] = hsl;
  if (s < MIN_SATURATION || l < 0.06 || l > 0.97) return undefined;
  return Math.abs(hueDistance(h, from)) <= band ? hsl : undefined;
}

/** Signed difference h − ref in (−180, 180]. */
function hueDistance(h: number, ref: number): number {
  const d = wrapHue(h - ref);
  return d > 180 ? d - 360 : d;
}

function wrapHue(h: number): number {
  return h - 360 * Math.floor(h / 360);
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function rgbToHsl(r8: number, g8: number, b8: number): [number, number, number] {
  const r = r8 / 255;
  const g = g8 / 255;
  const b = b8 / 255;
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const l = (max + min) / 2;
  const d = max - min;
  if (d === 0) return [0, 0, l];
  const s = Math.min(1, d / (1 - Math.abs(2 * l - 1)));
  let h: number;
  if (max === r) h = 60 * (((g - b) / d + 6) % 6);
  else if (max === g) h = 60 * ((b - r) / d + 2);
  else h = 60 * ((r - g) / d + 4);
  return [h, s, l];
}

function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const hp = h / 60;
  const x = c * (1 - Math.abs((hp % 2) - 1));
  const [r1, g1, b1] =
    hp < 1
      ? [c, x, 0]
      : hp < 2
        ? [x, c, 0]
        : hp < 3
          ? [0, c, x]
          : hp < 4
            ? [0, x, c]
            : hp < 5
              ? [x, 0, c]
              : [c, 0, x];
  const m = l - c / 2;
  const to8 = (v: number): number => clamp(Math.round((v + m) * 255), 0, 255);
  return [to8(r1), to8(g1), to8(b1)];
}
