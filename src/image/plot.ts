import sharp from 'sharp';
import { writeFileAtomic } from '../util/files.js';

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  /** Draw a line through the points (a sweep) or just markers (single settings). */
  line?: boolean;
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  width?: number;
  height?: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/** A small dependency-free scatter/line chart as SVG (rendered to PNG by sharp) for benchmark reports. */
export function plotSvg(spec: PlotSpec): string {
  const width = spec.width ?? 640;
  const height = spec.height ?? 420;
  const margin = { left: 70, right: 200, top: 40, bottom: 55 };
  const all = spec.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const [x0, x1] = paddedRange(xs);
  const [y0, y1] = paddedRange(ys);
  const px = (x: number) => margin.left + ((x - x0) / (x1 - x0)) * (width - margin.left - margin.right);
  const py = (y: number) =>
    height - margin.bottom - ((y - y0) / (y1 - y0)) * (height - margin.top - margin.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${margin.left}" y="22" text-anchor="start" font-size="15">${escape(spec.title)}</text>`,
  ];
  for (const tick of ticks(x0, x1)) {
    parts.push(
      `<line x1="${px(tick)}" y1="${margin.top}" x2="${px(tick)}" y2="${height - margin.bottom}" stroke="#eee"/>`,
    );
    parts.push(
      `<text x="${px(tick)}" y="${height - margin.bottom + 16}" text-anchor="middle">${format(tick)}</text>`,
    );
  }
  for (const tick of ticks(y0, y1)) {
    parts.push(
      `<line x1="${margin.left}" y1="${py(tick)}" x2="${width - margin.right}" y2="${py(tick)}" stroke="#eee"/>`,
    );
    parts.push(`<text x="${margin.left - 6}" y="${py(tick) + 4}" text-anchor="end">${format(tick)}</text>`);
  }
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${width - margin.left - margin.right}" height="${height - margin.top - margin.bottom}" fill="none" stroke="#333"/>`,
    `<text x="${(margin.left + width - margin.right) / 2}" y="${height - 12}" text-anchor="middle">${escape(spec.xLabel)}</text>`,
    `<text transform="translate(18 ${(margin.top + height - margin.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(spec.yLabel)}</text>`,
  );
  spec.series.forEach((series, k) => {
    const colour = COLOURS[k % COLOURS.length];
    const points = series.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (series.line && points.length > 1) {
      parts.push(
        `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map(([x, y]) => `${px(x)},${py(y)}`).join(' ')}"/>`,
      );
    }
    for (const [x, y] of points) parts.push(`<circle cx="${px(x)}" cy="${py(y)}" r="4" fill="${colour}"/>`);
    const ly = margin.top + 10 + k * 18;
    parts.push(`<circle cx="${width - margin.right + 14}" cy="${ly}" r="4" fill="${colour}"/>`);
    parts.push(`<text x="${width - margin.right + 24}" y="${ly + 4}">${escape(series.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function savePlot(spec: PlotSpec, path: string): Promise<void> {
  await writeFileAtomic(
    path,
    await sharp(Buffer.from(plotSvg(spec)))
      .png()
      .toBuffer(),
  );
}

function paddedRange(values: number[]): [number, number] {
  if (values.length === 0) return [0, 1];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function ticks(lo: number, hi: number): number[] {
  const step = 10 ** Math.floor(Math.log10((hi - lo) / 4));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= 6) ?? step * 10;
  const out: number[] = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi; t += nice) out.push(Number(t.toPrecision(12)));
  return out;
}

function format(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString();
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
