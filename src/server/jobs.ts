/**
 * The in-process job queue of `editkit serve`: bounded (submit throws {@link QueueFullError} when full, the route
 * answers 429 with Retry-After), one job at a time (ONNX Runtime's WebGPU sessions must not run concurrently, and
 * on a CPU two jobs only share the same cores), a timeout per job, cancellation between pipeline steps, progress
 * events with an ETA, and results in a data directory that expire after a time-to-live.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobProgress {
  stage: string;
  step: number;
  total: number;
  /** Seconds left in this stage at the current rate; null before the second step. */
  etaSeconds: number | null;
}

export type JobEvent =
  | { type: 'queued'; position: number }
  | ({ type: 'progress' } & JobProgress)
  | { type: 'done'; results: string[] }
  | { type: 'failed'; error: string }
  | { type: 'cancelled' };

export interface JobRecord {
  id: string;
  method: string;
  model: string;
  state: JobState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  progress?: JobProgress;
  error?: string;
  /** Result file names in the job's directory (e.g. result.png, mask.png, side-by-side.png). */
  results: string[];
}

/**
 * Turns (stage, step, total) reports into progress with an ETA: the time per step since the stage began, times the
 * steps left (null until a step of the stage has passed).
 */
export function progressTracker(): (stage: string, step: number, total: number) => JobProgress {
  let start = { stage: '', at: 0, step: 0 };
  return (stage, step, total) => {
    const now = performance.now();
    if (stage !== start.stage) start = { stage, at: now, step };
    const done = step - start.step;
    const rate = done > 0 ? (now - start.at) / 1000 / done : null;
    return { stage, step, total, etaSeconds: rate === null ? null : Math.max(0, rate * (total - step)) };
  };
}

/** The reason a cancelled job's AbortSignal carries: the pipelines (which take the signal) throw it at their next step. */
export class JobCancelledError extends Error {
  constructor() {
    super('cancelled');
  }
}

export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super('the queue is full');
  }
}

export interface JobContext {
  dir: string;
  signal: AbortSignal;
  /** Report progress; throws JobCancelledError when the job was cancelled or timed out. */
  progress: (stage: string, step: number, total: number) => void;
}

/** Runs one job: writes its files into ctx.dir and returns their names. */
export type JobRunner = (job: JobRecord, ctx: JobContext) => Promise<string[]>;

interface Entry {
  record: JobRecord;
  controller: AbortController;
  events: EventEmitter;
  history: JobEvent[];
}

export interface JobQueueOptions {
  dataDir: string;
  runner: JobRunner;
  /** Jobs waiting (not counting the running one); default 16. */
  maxQueued?: number;
  /** Default 10 minutes. */
  timeoutMs?: number;
  /** How long finished jobs and their files are kept (default 1 hour). */
  ttlMs?: number;
}

export class JobQueue {
  private readonly entries = new Map<string, Entry>();
  private readonly waiting: string[] = [];
  private running: string | undefined;
  /** Jobs whose inputs are still being written (counted against the bound). */
  private settingUp = 0;
  private readonly sweeper: NodeJS.Timeout;
  /** Counters for /metrics. */
  readonly counts: Record<JobState | 'refused', number> = {
    queued: 0,
    running: 0,
    done: 0,
    failed: 0,
    cancelled: 0,
    refused: 0,
  };
  readonly durations: number[] = [];

  constructor(private readonly options: JobQueueOptions) {
    this.sweeper = setInterval(() => void this.sweep(), Math.min(60_000, this.ttl / 2));
    this.sweeper.unref();
  }

  private get ttl(): number {
    return this.options.ttlMs ?? 3_600_000;
  }

  get length(): number {
    return this.waiting.length;
  }

  get runningJob(): string | undefined {
    return this.running;
  }

  /** Queue a job; throws QueueFullError when the queue is at its bound. */
  submit(
    method: string,
    model: string,
    setup?: (dir: string) => Promise<void>,
    id = randomUUID(),
  ): Promise<JobRecord> {
    const max = this.options.maxQueued ?? 16;
    if (this.waiting.length + this.settingUp >= max) {
      this.counts.refused++;
      const average = this.durations.length
        ? this.durations.reduce((a, b) => a + b, 0) / this.durations.length
        : 5;
      throw new QueueFullError(Math.max(1, Math.ceil(average * (this.waiting.length + 1))));
    }
    const record: JobRecord = {
      id,
      method,
      model,
      state: 'queued',
      createdAt: new Date().toISOString(),
      results: [],
    };
    const entry: Entry = {
      record,
      controller: new AbortController(),
      events: new EventEmitter(),
      history: [],
    };
    this.entries.set(id, entry);
    this.counts.queued++;
    // The job joins the line only once its inputs are on disk, so that no worker can start it before.
    this.settingUp++;
    const ready = (async () => {
      await mkdir(this.dirOf(id), { recursive: true });
      await setup?.(this.dirOf(id));
    })();
    return ready.then(
      () => {
        this.settingUp--;
        if (record.state === 'queued') {
          this.waiting.push(id);
          this.emit(entry, { type: 'queued', position: this.waiting.length });
          this.pump();
        }
        return record;
      },
      (error: unknown) => {
        this.settingUp--;
        this.finish(entry, 'failed', error instanceof Error ? error.message : String(error));
        throw error;
      },
    );
  }

  get(id: string): JobRecord | undefined {
    return this.entries.get(id)?.record;
  }

  dirOf(id: string): string {
    return join(this.options.dataDir, id);
  }

  /** Every event so far, then the live ones; returns an unsubscribe function. */
  subscribe(id: string, listener: (event: JobEvent) => void): () => void {
    const entry = this.entries.get(id);
    if (!entry) throw new Error(`no job ${id}`);
    for (const event of entry.history) listener(event);
    entry.events.on('event', listener);
    return () => entry.events.off('event', listener);
  }

  /** Cancel a queued or running job (a running one stops at its next step). */
  cancel(id: string): JobRecord | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.record.state === 'queued') {
      // In the line, or still writing its inputs (then it never joins).
      const at = this.waiting.indexOf(id);
      if (at >= 0) this.waiting.splice(at, 1);
      this.finish(entry, 'cancelled');
    } else if (entry.record.state === 'running') entry.controller.abort(new JobCancelledError());
    return entry.record;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const id of [...this.waiting]) this.cancel(id);
    if (this.running) this.cancel(this.running);
  }

  private emit(entry: Entry, event: JobEvent): void {
    entry.history.push(event);
    entry.events.emit('event', event);
  }

  private finish(entry: Entry, state: JobState, error?: string): void {
    entry.record.state = state;
    entry.record.finishedAt = new Date().toISOString();
    if (error) entry.record.error = error;
    this.counts[state]++;
    if (state === 'done') this.emit(entry, { type: 'done', results: entry.record.results });
    else if (state === 'failed') this.emit(entry, { type: 'failed', error: error ?? 'failed' });
    else if (state === 'cancelled') this.emit(entry, { type: 'cancelled' });
  }

  private pump(): void {
    if (this.running) return;
    const id = this.waiting.shift();
    if (!id) return;
    const entry = this.entries.get(id)!;
    this.running = id;
    void this.run(entry).finally(() => {
      this.running = undefined;
      this.pump();
    });
  }

  private async run(entry: Entry): Promise<void> {
    const { record, controller } = entry;
    record.state = 'running';
    record.startedAt = new Date().toISOString();
    this.counts.running++;
    const started = performance.now();
    const timeout = setTimeout(
      () =>
        controller.abort(
          new Error(
            `the job ran past its time limit of ${((this.options.timeoutMs ?? 600_000) / 1000).toFixed(0)} s`,
          ),
        ),
      this.options.timeoutMs ?? 600_000,
    );
    const track = progressTracker();
    const progress = (stage: string, step: number, total: number) => {
      if (controller.signal.aborted)
        throw controller.signal.reason instanceof Error ? controller.signal.reason : new JobCancelledError();
      record.progress = track(stage, step, total);
      this.emit(entry, { type: 'progress', ...record.progress });
    };
    try {
      record.results = await this.options.runner(record, {
        dir: this.dirOf(record.id),
        signal: controller.signal,
        progress,
      });
      if (controller.signal.aborted) throw controller.signal.reason;
      this.durations.push((performance.now() - started) / 1000);
      if (this.durations.length > 100) this.durations.shift();
      this.finish(entry, 'done');
    } catch (error) {
      if (error instanceof JobCancelledError) this.finish(entry, 'cancelled');
      else
        this.finish(entry, 'failed', error instanceof Error ? error.message.split('\n')[0] : String(error));
    } finally {
      clearTimeout(timeout);
      this.counts.running--;
    }
  }

  private async sweep(): Promise<void> {
    const cutoff = Date.now() - this.ttl;
    for (const [id, entry] of this.entries) {
      const finished = entry.record.finishedAt ? Date.parse(entry.record.finishedAt) : undefined;
      if (finished !== undefined && finished < cutoff) {
        this.entries.delete(id);
        await rm(this.dirOf(id), { recursive: true, force: true }).catch(() => undefined);
      }
    }
  }
}
