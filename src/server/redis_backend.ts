/**
 * Jobs on Redis with BullMQ: `editkit serve --queue redis://HOST:PORT` queues them, `editkit worker --queue
 * redis://…` runs them (each worker with its own device, one job at a time), on any number of machines. Inputs
 * travel in the job's data, results come back as Redis keys with a time-to-live, progress through BullMQ's
 * progress events. A worker killed in the middle of a job stops renewing its lock; BullMQ's stalled-job check
 * puts the job back in the queue and another worker runs it (`maxStalledCount` 1): the client still sees it end.
 * Cancel: a waiting job is removed; a running one is told over a pub/sub channel and stops at its next step.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Job, Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { StableDiffusionBundle } from '../models/bundle.js';
import type { BackendStats, JobBackend, JobInputs } from './backend.js';
import {
  JobCancelledError,
  QueueFullError,
  progressTracker,
  type JobEvent,
  type JobProgress,
  type JobRecord,
} from './jobs.js';
import { INPUT_FILES, runMethod, type MethodName } from './methods.js';

const QUEUE = 'editkit-jobs';
const CANCEL_CHANNEL = 'editkit:cancel';
const resultKey = (id: string, file: string) => `editkit:result:${id}:${file}`;
const cancelledKey = (id: string) => `editkit:cancelled:${id}`;

interface JobData {
  method: MethodName;
  model: string;
  params: Record<string, unknown>;
  image?: string;
  mask?: string;
  createdAt: string;
}

interface JobResult {
  results: string[];
}

export interface RedisOptions {
  url: string;
  /** Jobs that may wait before submit answers 429 (default 16). */
  maxQueued?: number;
  /** Seconds results stay in Redis (default 3600). */
  ttlSeconds?: number;
}

/** BullMQ needs `maxRetriesPerRequest: null` on its blocking connections. */
function connect(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

export class RedisBackend implements JobBackend {
  private readonly connection: Redis;
  private readonly queue: Queue<JobData, JobResult>;
  private readonly events: QueueEvents;
  private readonly listeners = new Map<string, Set<(event: JobEvent) => void>>();
  private readonly refused = { count: 0 };

  constructor(private readonly options: RedisOptions) {
    this.connection = connect(options.url);
    this.queue = new Queue<JobData, JobResult>(QUEUE, { connection: this.connection });
    this.events = new QueueEvents(QUEUE, { connection: connect(options.url) });
    const emit = (id: string, event: JobEvent) => this.listeners.get(id)?.forEach((l) => l(event));
    this.events.on('progress', ({ jobId, data }) =>
      emit(jobId, { type: 'progress', ...(data as JobProgress) }),
    );
    this.events.on('completed', ({ jobId, returnvalue }) => {
      const value = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as JobResult;
      emit(jobId, { type: 'done', results: value.results });
    });
    this.events.on('failed', ({ jobId, failedReason }) =>
      emit(
        jobId,
        failedReason === 'cancelled' ? { type: 'cancelled' } : { type: 'failed', error: failedReason },
      ),
    );
    this.events.on('removed', ({ jobId }) => emit(jobId, { type: 'cancelled' }));
  }

  async submit(method: MethodName, model: string, params: Record<string, unknown>, inputs: JobInputs) {
    const waiting = await this.queue.getWaitingCount();
    if (waiting >= (this.options.maxQueued ?? 16)) {
      this.refused.count++;
      throw new QueueFullError(Math.max(1, waiting));
    }
    const id = crypto.randomUUID();
    await this.queue.add(
      'job',
      {
        method,
        model,
        params,
        image: inputs.image?.toString('base64'),
        mask: inputs.mask?.toString('base64'),
        createdAt: new Date().toISOString(),
      },
      {
        jobId: id,
        removeOnComplete: { age: this.options.ttlSeconds ?? 3600 },
        removeOnFail: { age: this.options.ttlSeconds ?? 3600 },
      },
    );
    return (await this.get(id))!;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const job = await Job.fromId<JobData, JobResult>(this.queue, id);
    if (!job) {
      if (await this.connection.exists(cancelledKey(id))) {
        const record = JSON.parse((await this.connection.get(cancelledKey(id)))!) as JobRecord;
        return { ...record, state: 'cancelled' };
      }
      return undefined;
    }
    const state = await job.getState();
    const record: JobRecord = {
      id,
      method: job.data.method,
      model: job.data.model,
      state:
        state === 'completed'
          ? 'done'
          : state === 'failed'
            ? job.failedReason === 'cancelled'
              ? 'cancelled'
              : 'failed'
            : state === 'active'
              ? 'running'
              : 'queued',
      createdAt: job.data.createdAt,
      results: job.returnvalue?.results ?? [],
    };
    if (job.processedOn) record.startedAt = new Date(job.processedOn).toISOString();
    if (job.finishedOn) record.finishedAt = new Date(job.finishedOn).toISOString();
    if (typeof job.progress === 'object' && job.progress !== null)
      record.progress = job.progress as unknown as JobProgress;
    if (record.state === 'failed') record.error = job.failedReason;
    return record;
  }

  async subscribe(id: string, listener: (event: JobEvent) => void) {
    const set = this.listeners.get(id) ?? new Set();
    this.listeners.set(id, set);
    set.add(listener);
    // Where the job stands now, then the live events.
    const record = await this.get(id);
    if (record?.state === 'queued') listener({ type: 'queued', position: 0 });
    else if (record?.state === 'running' && record.progress)
      listener({ type: 'progress', ...record.progress });
    else if (record?.state === 'done') listener({ type: 'done', results: record.results });
    else if (record?.state === 'failed') listener({ type: 'failed', error: record.error ?? 'failed' });
    else if (record?.state === 'cancelled') listener({ type: 'cancelled' });
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  async cancel(id: string) {
    const job = await Job.fromId<JobData, JobResult>(this.queue, id);
    if (!job) return this.get(id);
    const state = await job.getState();
    if (state === 'waiting' || state === 'delayed' || state === 'prioritized') {
      const record = await this.get(id);
      await this.connection.set(
        cancelledKey(id),
        JSON.stringify(record),
        'EX',
        this.options.ttlSeconds ?? 3600,
      );
      await job.remove();
    } else if (state === 'active') await this.connection.publish(CANCEL_CHANNEL, id);
    return this.get(id);
  }

  async readResult(id: string, file: string) {
    const data = await this.connection.getBuffer(resultKey(id, file));
    return data ?? undefined;
  }

  async stats(): Promise<BackendStats> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'completed', 'failed');
    return {
      waiting: counts.waiting ?? 0,
      running: counts.active ?? 0,
      counts: { done: counts.completed ?? 0, failed: counts.failed ?? 0, refused: this.refused.count },
    };
  }

  async close() {
    await this.events.close();
    await this.queue.close();
    this.connection.disconnect();
  }
}

export interface WorkerOptions {
  url: string;
  bundle: (model: string) => Promise<StableDiffusionBundle>;
  /** DiffusionCLIP deltas by name (clip-edit jobs). */
  resolveDelta?: (name: string) => string | undefined;
  /** How long a job's lock lasts without renewal (default 30 s); a killed worker's job is retried after it. */
  lockMs?: number;
  ttlSeconds?: number;
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** `editkit worker`: runs jobs from the Redis queue, one at a time. Resolves to a function that stops it. */
export async function startWorker(
  options: WorkerOptions,
): Promise<{ close: () => Promise<void>; worker: Worker }> {
  const results = connect(options.url);
  const subscriber = connect(options.url);
  const running = new Map<string, AbortController>();
  await subscriber.subscribe(CANCEL_CHANNEL);
  subscriber.on('message', (_channel: string, id: string) => running.get(id)?.abort(new JobCancelledError()));
  const lockMs = options.lockMs ?? 30_000;
  const worker = new Worker<JobData, JobResult>(
    QUEUE,
    async (job) => {
      const controller = new AbortController();
      running.set(job.id!, controller);
      const timeout = setTimeout(
        () => controller.abort(new Error('the job ran past its time limit')),
        options.timeoutMs ?? 600_000,
      );
      const dir = await mkdtemp(join(tmpdir(), 'editkit-worker-'));
      options.log?.(`job ${job.id} (${job.data.method}) started`);
      try {
        if (job.data.image)
          await writeFile(join(dir, INPUT_FILES.image), Buffer.from(job.data.image, 'base64'));
        if (job.data.mask) await writeFile(join(dir, INPUT_FILES.mask), Buffer.from(job.data.mask, 'base64'));
        const track = progressTracker();
        const files = await runMethod(
          await options.bundle(job.data.model),
          job.data.method,
          job.data.params,
          {
            dir,
            signal: controller.signal,
            progress: (stage, step, total) => {
              if (controller.signal.aborted) throw controller.signal.reason;
              void job.updateProgress({ ...track(stage, step, total) });
            },
          },
          options.resolveDelta,
        );
        for (const file of files)
          await results.set(
            resultKey(job.id!, file),
            await readFile(join(dir, file)),
            'EX',
            options.ttlSeconds ?? 3600,
          );
        options.log?.(`job ${job.id} done`);
        return { results: files };
      } catch (error) {
        if (error instanceof JobCancelledError) throw new Error('cancelled');
        throw error instanceof Error ? new Error(error.message.split('\n')[0]) : error;
      } finally {
        clearTimeout(timeout);
        running.delete(job.id!);
        await rm(dir, { recursive: true, force: true });
      }
    },
    {
      connection: connect(options.url),
      concurrency: 1,
      lockDuration: lockMs,
      stalledInterval: Math.max(1000, lockMs / 2),
      maxStalledCount: 1,
    },
  );
  return {
    worker,
    close: async () => {
      await worker.close();
      await subscriber.quit();
      await results.quit();
    },
  };
}
