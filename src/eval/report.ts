/**
 * The eval report: report.html (self-contained: tables, SVG plots and PNG grids inlined, readable offline),
 * results.csv (one row per edit) and summary.md (the method × task tables).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { plotSvg, type PlotSpec } from '../image/plot.js';
import { writeFileAtomic } from '../util/files.js';
import { MASK_THRESHOLDS, METRICS, type EditScores } from './metrics.js';
import type { EvalResults } from './run.js';
import type { EvalTask } from './tasks.js';

/** PSNR of identical pixels is infinite; averages cap it here so that tables stay finite. */
const PSNR_CAP = 60;

export type Summary = Record<string, Partial<Record<EvalTask, Partial<Record<keyof EditScores, number>>>>>;

/** Mean of each metric per method and task (only the tasks a method accepts). */
export function summarize(results: EvalResults): Summary {
  const out: Summary = {};
  for (const method of results.methods) {
    out[method.key] = {};
    for (const task of results.settings.tasks) {
      if (!method.tasks.includes(task)) continue;
      const records = results.records.filter((r) => r.method === method.key && r.task === task);
      if (records.length === 0) continue;
      const row: Partial<Record<keyof EditScores, number>> = {};
      for (const { key, pooled } of METRICS) {
        // DragBench pools its Mean Distance over every point of every case, so cases with more points weigh more.
        const points = pooled ? records.flatMap((r) => r.details?.pointDistances?.[pooled] ?? []) : [];
        const values = (points.length > 0 ? points : records.map((r) => r.scores[key]))
          .map((v) => (key.endsWith('Psnr') && v === Infinity ? PSNR_CAP : v))
          .filter((v) => Number.isFinite(v));
        row[key] = values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
      }
      out[method.key][task] = row;
    }
  }
  return out;
}

export interface DetailSummary {
  /** Mean mask IoU at each of MASK_THRESHOLDS, per method and task (methods with a soft mask map only). */
  maskIoUByThreshold: Record<string, Partial<Record<EvalTask, number[]>>>;
  /** Mean seconds and the largest peak RSS per stage, per method and task (methods that report stages only). */
  stages: Record<string, Partial<Record<EvalTask, Record<string, { seconds: number; peakRssMiB: number }>>>>;
}

export function summarizeDetails(results: EvalResults): DetailSummary {
  const out: DetailSummary = { maskIoUByThreshold: {}, stages: {} };
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  for (const method of results.methods) {
    for (const task of results.settings.tasks) {
      const details = results.records
        .filter((r) => r.method === method.key && r.task === task)
        .map((r) => r.details ?? {});
      const sweeps = details.flatMap((d) => (d.maskIoUByThreshold ? [d.maskIoUByThreshold] : []));
      if (sweeps.length > 0)
        (out.maskIoUByThreshold[method.key] ??= {})[task] = MASK_THRESHOLDS.map((_, k) =>
          mean(sweeps.map((s) => s[k])),
        );
      const stages = details.flatMap((d) => (d.stages ? [d.stages] : []));
      if (stages.length > 0)
        (out.stages[method.key] ??= {})[task] = Object.fromEntries(
          Object.keys(stages[0]).map((stage) => [
            stage,
            {
              seconds: mean(stages.map((s) => s[stage].seconds)),
              peakRssMiB: Math.max(...stages.map((s) => s[stage].peakRssMiB)),
            },
          ]),
        );
    }
  }
  return out;
}

/** A table as Markdown or HTML; cells are already text (HTML cells escaped by the caller where needed). */
function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  format: 'html' | 'md',
): string {
  if (format === 'md')
    return [
      `| ${header.join(' | ')} |`,
      `| ${header.map(() => '---').join(' | ')} |`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
    ].join('\n');
  return [
    `<table><tr>${header.map((h) => `<th>${escape(h)}</th>`).join('')}</tr>`,
    ...rows.map(
      (r) =>
        `<tr><th>${escape(r[0])}</th>${r
          .slice(1)
          .map((c) => `<td>${escape(c)}</td>`)
          .join('')}</tr>`,
    ),
    '</table>',
  ].join('\n');
}

const formatted = (v: number | undefined, digits: number) =>
  v === undefined ? 'n/a' : Number.isFinite(v) ? v.toFixed(digits) : '–';

/**
 * One task's methods as rows and the chosen metrics as columns (what the bench views print): only the methods that
 * take the task, with the number of edits behind each row.
 */
export function methodTable(
  results: EvalResults,
  summary: Summary,
  task: EvalTask,
  metrics: readonly (keyof EditScores)[],
  format: 'html' | 'md' = 'md',
): string {
  const columns = metrics.map((key) => METRICS.find((m) => m.key === key)!);
  const rows = results.methods
    .filter((m) => summary[m.key]?.[task] !== undefined)
    .map((m) => [
      m.label,
      String(results.records.filter((r) => r.method === m.key && r.task === task).length),
      ...columns.map((c) => formatted(summary[m.key][task]![c.key], c.digits)),
    ]);
  return table(
    ['method', 'edits', ...columns.map((c) => `${c.label} ${c.better === 'higher' ? '↑' : '↓'}`)],
    rows,
    format,
  );
}

/** Mask IoU against the binarisation threshold of the soft mask map, one column per method and task. */
export function maskThresholdTable(
  results: EvalResults,
  details: DetailSummary,
  format: 'html' | 'md' = 'md',
): string {
  const series = results.methods.flatMap((m) =>
    results.settings.tasks.flatMap((task) => {
      const sweep = details.maskIoUByThreshold[m.key]?.[task];
      return sweep ? [{ name: `${m.label}, ${task}`, sweep }] : [];
    }),
  );
  if (series.length === 0) return '';
  return table(
    ['threshold', ...series.map((s) => `mask IoU: ${s.name}`)],
    MASK_THRESHOLDS.map((t, k) => [String(t), ...series.map((s) => formatted(s.sweep[k], 3))]),
    format,
  );
}

/** Seconds and peak memory per stage, for the methods that report their stages. */
export function stageTable(
  results: EvalResults,
  details: DetailSummary,
  format: 'html' | 'md' = 'md',
): string {
  const rows = results.methods.flatMap((m) =>
    results.settings.tasks.flatMap((task) =>
      Object.entries(details.stages[m.key]?.[task] ?? {}).map(([stage, v]) => [
        `${m.label}, ${task}: ${stage}`,
        formatted(v.seconds, 2),
        formatted(v.peakRssMiB, 0),
      ]),
    ),
  );
  return rows.length === 0 ? '' : table(['stage', 's/edit', 'peak RSS MiB'], rows, format);
}

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function tables(results: EvalResults, summary: Summary, format: 'html' | 'md'): string {
  const tasks = results.settings.tasks;
  const parts: string[] = [];
  // Metrics nobody measured (the LMM score without an endpoint) get no table.
  const measured = METRICS.filter((metric) =>
    results.methods.some((m) => tasks.some((t) => Number.isFinite(summary[m.key]?.[t]?.[metric.key]))),
  );
  for (const metric of measured) {
    // Only the tasks where the metric means something (Mean Distance needs drag points; the directional CLIP score
    // a caption that changes).
    const columns = tasks.filter((t) =>
      results.methods.some((m) => Number.isFinite(summary[m.key]?.[t]?.[metric.key])),
    );
    // The best method per task; the reference rows (ground truth, input) bound it and do not compete.
    const best: Partial<Record<EvalTask, number>> = {};
    for (const task of columns) {
      const values = results.methods
        .filter((m) => m.family !== 'reference')
        .map((m) => summary[m.key]?.[task]?.[metric.key])
        .filter((v): v is number => v !== undefined && Number.isFinite(v));
      if (values.length > 0)
        best[task] = metric.better === 'higher' ? Math.max(...values) : Math.min(...values);
    }
    const cell = (key: string, task: EvalTask) => {
      const v = summary[key]?.[task]?.[metric.key];
      if (v === undefined) return format === 'html' ? '<td class="na">n/a</td>' : 'n/a';
      const text = Number.isFinite(v) ? v.toFixed(metric.digits) : '–';
      const isBest =
        Number.isFinite(v) &&
        best[task] === v &&
        results.methods.find((m) => m.key === key)?.family !== 'reference';
      if (format === 'md') return isBest ? `**${text}**` : text;
      return `<td${isBest ? ' class="best"' : ''}>${text}</td>`;
    };
    const arrow = metric.better === 'higher' ? '↑' : '↓';
    if (format === 'md') {
      parts.push(
        `### ${metric.label} ${arrow}`,
        '',
        `| method | ${columns.join(' | ')} |`,
        `| --- | ${columns.map(() => '---').join(' | ')} |`,
      );
      for (const m of results.methods)
        parts.push(`| ${m.label} | ${columns.map((t) => cell(m.key, t)).join(' | ')} |`);
      parts.push('');
    } else {
      parts.push(
        `<h3>${escape(metric.label)} ${arrow}</h3>`,
        `<table><tr><th>method</th>${columns.map((t) => `<th>${t}</th>`).join('')}</tr>`,
        ...results.methods.map(
          (m) => `<tr><th>${escape(m.label)}</th>${columns.map((t) => cell(m.key, t)).join('')}</tr>`,
        ),
        '</table>',
      );
    }
  }
  return parts.join('\n');
}

/**
 * Success against preservation on one task, a series per method family: a family's settings (DiffEdit's r, SDEdit's
 * strength) make a curve, so sweeps compare as trade-offs rather than as single points. The reference rows are
 * left out.
 */
export function tradeoffPlot(results: EvalResults, summary: Summary, task: EvalTask): PlotSpec | undefined {
  const families = new Map<string, [number, number][]>();
  // The reference rows sit at the capped 60 dB and would squash every method into a corner.
  for (const m of results.methods.filter((m) => m.family !== 'reference')) {
    const row = summary[m.key]?.[task];
    if (!row) continue;
    const points = families.get(m.family) ?? [];
    points.push([row.preservationPsnr ?? NaN, row.success ?? NaN]);
    families.set(m.family, points);
  }
  if (families.size === 0) return undefined;
  return {
    title: `${task}: success vs preservation`,
    xLabel: 'preservation PSNR outside the changed region (dB)',
    yLabel: 'success (judge)',
    series: [...families.entries()].map(([family, points]) => ({
      name: points.length > 1 ? `${family} (${points.length} settings)` : family,
      line: points.length > 1,
      points: points.sort((p, q) => p[0] - q[0]),
    })),
  };
}

function plots(results: EvalResults, summary: Summary): string {
  return results.settings.tasks
    .map((task) => {
      const spec = tradeoffPlot(results, summary, task);
      return spec ? `<figure>${plotSvg({ ...spec, width: 560, height: 320 })}</figure>` : '';
    })
    .join('\n');
}

/** The mask threshold sweep and the per-stage table, where some method reports them. */
function detailSections(results: EvalResults, details: DetailSummary, format: 'html' | 'md'): string[] {
  const heading = (text: string) => (format === 'md' ? `### ${text}\n` : `<h3>${escape(text)}</h3>`);
  const sections: string[] = [];
  const masks = maskThresholdTable(results, details, format);
  if (masks) sections.push(heading('Mask IoU vs binarisation threshold'), masks);
  const stages = stageTable(results, details, format);
  if (stages) sections.push(heading('Time and memory per stage'), stages);
  return sections;
}

export async function writeReport(out: string, results: EvalResults): Promise<void> {
  const summary = summarize(results);
  const details = summarizeDetails(results);
  // The means of every table, for scripts (the model card): NaN and capped infinities become null in JSON.
  await writeFileAtomic(
    join(out, 'summary.json'),
    `${JSON.stringify(
      {
        suiteVersion: results.suiteVersion,
        model: results.model,
        device: results.device,
        settings: results.settings,
        methods: results.methods,
        edits: Object.fromEntries(
          results.methods.map((m) => [
            m.key,
            Object.fromEntries(
              results.settings.tasks
                .filter((t) => summary[m.key]?.[t] !== undefined)
                .map((t) => [t, results.records.filter((r) => r.method === m.key && r.task === t).length]),
            ),
          ]),
        ),
        summary,
        maskThresholds: MASK_THRESHOLDS,
        ...details,
      },
      null,
      1,
    )}\n`,
  );
  const header = ['case', 'task', 'method', 'instruction', ...METRICS.map((m) => m.key)];
  const csv = [
    header.join(','),
    ...results.records.map((r) =>
      [
        r.caseId,
        r.task,
        r.method,
        `"${r.instruction.replace(/"/g, '""')}"`,
        ...METRICS.map((m) => String(r.scores[m.key])),
      ].join(','),
    ),
  ].join('\n');
  await writeFileAtomic(join(out, 'results.csv'), `${csv}\n`);
  const md = [
    `# EditKit eval (suite v${results.suiteVersion})`,
    '',
    `Model ${results.model} on ${results.device}; ${results.settings.cases} cases per task at ${results.settings.imageSize} px. Best per column in bold; n/a where a method does not take the task.`,
    '',
    tables(results, summary, 'md'),
    ...detailSections(results, details, 'md'),
  ].join('\n');
  await writeFileAtomic(join(out, 'summary.md'), md);
  const grids = results.examples
    .map((e) => {
      const png = readFileSync(join(out, 'images', e.file)).toString('base64');
      return `<figure><img alt="${escape(e.caseId)}" src="data:image/png;base64,${png}"><figcaption>${escape(e.caseId)}: ${e.columns.map(escape).join(' | ')}</figcaption></figure>`;
    })
    .join('\n');
  const settings = escape(
    JSON.stringify(
      { settings: results.settings, methods: results.methods, versions: results.versions },
      null,
      2,
    ),
  );
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EditKit eval</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f5e9; }
td.na { color: #999; }
figure { display: inline-block; margin: 0.5rem; }
img { image-rendering: pixelated; height: ${Math.max(160, results.settings.imageSize)}px; max-width: 100%; }
figcaption { font-size: 0.8rem; color: #555; }
pre { background: #f6f6f6; padding: 1rem; overflow: auto; font-size: 0.8rem; }
</style></head><body>
<h1>EditKit eval</h1>
<p>Suite v${results.suiteVersion}: the survey's seven editing tasks on EmojiWorld, ${results.settings.cases} held-out cases per task, every method on the tasks it takes, scored against the ground truth.
Model <code>${escape(results.model)}</code> on ${escape(results.device)}, ${results.records.length} edits, ${escape(results.startedAt)} – ${escape(results.finishedAt ?? 'unfinished')}.</p>
<p>Success: the judge finds the target's objects and background. Preservation: outside the changed region, against the input. Fidelity: inside it, against the ground truth. The best value of each task is highlighted; n/a means the method does not take that task.</p>
<h2>Method × task</h2>
${tables(results, summary, 'html')}
${detailSections(results, details, 'html').join('\n')}
<h2>Success vs preservation</h2>
${plots(results, summary)}
<h2>Examples</h2>
${grids}
<h2>Settings</h2>
<pre>${settings}</pre>
</body></html>
`;
  await writeFileAtomic(join(out, 'report.html'), html);
}
