/**
 * Progress display for long CLI runs (model loading, denoising steps, inversion, …).
 *
 * One line per stage on stderr, e.g. `editkit │ denoise ████████░░░░ 12/50 │ ETA 41s`: stdout is reserved for
 * results (`--json`), so progress must never reach it. When disabled (stderr is not a TTY, or `--json`) every
 * method is a no-op, so pipelines can report progress unconditionally.
 *
 * `stop()` must be called (in a `finally`): an active cli-progress bar keeps a redraw timer that holds the
 * event loop open.
 */
import cliProgress from 'cli-progress';
import type { Params } from 'cli-progress';

export interface Progress {
  /** Finish the current stage's line, if any, and start a new stage of `total` units. */
  stage(name: string, total: number): void;
  /** Advance the current stage by `n` units (default 1). */
  tick(n?: number): void;
  /** Finish the current line; idempotent. */
  stop(): void;
}

export interface ProgressOptions {
  /** Normally {@link shouldShowProgress}. */
  enabled: boolean;
  /** Prefix of every line, e.g. the command name. */
  label: string;
  /** Where to draw; stderr unless a test needs otherwise. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** Progress is for humans watching a terminal: not under `--json`, and not when stderr is piped or logged. */
export function shouldShowProgress(json: boolean, stream: { isTTY?: boolean } = process.stderr): boolean {
  return !json && stream.isTTY === true;
}

const NOOP: Progress = { stage() {}, tick() {}, stop() {} };

export function createProgress(options: ProgressOptions): Progress {
  if (!options.enabled) return NOOP;
  const { label } = options;
  let bar: cliProgress.SingleBar | undefined;
  let stageName = '';

  const format = (barOptions: cliProgress.Options, params: Params): string => {
    const eta = Number(params.eta);
    // cli-progress reports 0 before the first tick and 'NULL'/'INF' strings when it has no rate yet.
    const etaText =
      params.value > 0 && Number.isFinite(eta) ? cliProgress.Format.TimeFormat(eta, barOptions, 1) : '--';
    const barText = cliProgress.Format.BarFormat(params.progress, barOptions);
    return `${label} │ ${stageName} ${barText} ${params.value}/${params.total} │ ETA ${etaText}`;
  };

  const finish = (): void => {
    bar?.stop();
    bar = undefined;
  };

  return {
    stage(name, total) {
      finish();
      stageName = name;
      bar = new cliProgress.SingleBar({
        stream: options.stream ?? process.stderr,
        format,
        barsize: 30,
        barCompleteChar: '█',
        barIncompleteChar: '░',
        // Leave cursor and line wrapping alone: a Ctrl-C mid-run must not leave the terminal altered, and
        // cli-progress's SIGINT hook would swallow the signal.
        hideCursor: false,
        linewrap: true,
        gracefulExit: false,
        etaBuffer: 20,
      });
      bar.start(total, 0);
    },
    tick(n = 1) {
      bar?.increment(n);
    },
    stop: finish,
  };
}
