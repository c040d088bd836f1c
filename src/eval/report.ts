/**
 * The eval report: report.html (self-contained: tables, SVG plots and PNG grids inlined, readable offline),
 * results.csv (one row per edit) and summary.md (the method × task tables).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { plotSvg } from '../image/plot.js';
import { writeFileAtomic } from '../util/files.js';
import { METRICS, type EditScores } from './metrics.js';
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
      for (const { key } of METRICS) {
        const values = records
          .map((r) => r.scores[key])
          .map((v) => (key.endsWith('Psnr') && v === Infinity ? PSNR_CAP : v))
          .filter((v) => Number.isFinite(v));
        row[key] = values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
      }
      out[method.key][task] = row;
    }
  }
  return out;
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
    // The best method per task; the ground-truth row is the ceiling, not a contender.
    const best: Partial<Record<EvalTask, number>> = {};
    for (const task of tasks) {
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
        `| method | ${tasks.join(' | ')} |`,
        `| --- | ${tasks.map(() => '---').join(' | ')} |`,
      );
      for (const m of results.methods)
        parts.push(`| ${m.label} | ${tasks.map((t) => cell(m.key, t)).join(' | ')} |`);
      parts.push('');
    } else {
      parts.push(
        `<h3>${escape(metric.label)} ${arrow}</h3>`,
        `<table><tr><th>method</th>${tasks.map((t) => `<th>${t}</th>`).join('')}</tr>`,
        ...results.methods.map(
          (m) => `<tr><th>${escape(m.label)}</th>${tasks.map((t) => cell(m.key, t)).join('')}</tr>`,
        ),
        '</table>',
      );
    }
  }
  return parts.join('\n');
}

function plots(results: EvalResults, summary: Summary): string {
  return results.settings.tasks
    .map((task) => {
      const series = results.methods
        .filter((m) => summary[m.key]?.[task] !== undefined)
        .map((m) => ({
          name: m.label,
          points: [
            [summary[m.key][task]!.preservationPsnr ?? NaN, summary[m.key][task]!.success ?? NaN] as [
              number,
              number,
            ],
          ],
        }));
      if (series.length === 0) return '';
      return `<figure>${plotSvg({ title: `${task}: success vs preservation`, xLabel: 'preservation PSNR (dB)', yLabel: 'success', series, width: 560, height: 320 })}</figure>`;
    })
    .join('\n');
}

export async function writeReport(out: string, results: EvalResults): Promise<void> {
  const summary = summarize(results);
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
