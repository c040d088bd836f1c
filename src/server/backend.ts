/**
 * Where jobs run, seen from the API: in this process ({@link LocalBackend}, the default) or on workers that share a
 * Redis ({@link RedisBackend} in redis_backend.ts). Both take a job's inputs and parameters, report its state and
 * events, cancel it, and hand back its result files.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { JobQueue, type JobEvent, type JobRecord } from './jobs.js';
import { INPUT_FILES, runMethod, type MethodName } from './methods.js';

export interface JobInputs {
  image?: Buffer;
  mask?: Buffer;
}

export interface BackendStats {
  waiting: number;
  running: number;
  counts: Record<string, number>;
}

export interface JobBackend {
  /** Queue a job; throws QueueFullError at the bound. */
  submit(
    method: MethodName,
    model: string,
    params: Record<string, unknown>,
    inputs: JobInputs,
  ): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | undefined>;
  /** Past events, then live ones; resolves to an unsubscribe function. */
  subscribe(id: string, listener: (event: JobEvent) => void): Promise<() => void>;
  cancel(id: string): Promise<JobRecord | undefined>;
  readResult(id: string, file: string): Promise<Buffer | undefined>;
  stats(): Promise<BackendStats>;
  close(): Promise<void>;
}

/** Jobs run in this process, one at a time (jobs.ts). */
export class LocalBackend implements JobBackend {
  readonly queue: JobQueue;
  private readonly params = new Map<string, Record<string, unknown>>();

  constructor(
    options: { dataDir: string; maxQueued?: number; timeoutMs?: number; ttlMs?: number },
    bundle: (model: string) => Promise<StableDiffusionBundle>,
    resolveDelta: (name: string) => string | undefined = () => undefined,
  ) {
    this.queue = new JobQueue({
      ...options,
      runner: async (job, ctx) => {
        const params = this.params.get(job.id)!;
        this.params.delete(job.id);
        return runMethod(await bundle(job.model), job.method as MethodName, params, ctx, resolveDelta);
      },
    });
  }

  async submit(method: MethodName, model: string, params: Record<string, unknown>, inputs: JobInputs) {
    const id = crypto.randomUUID();
    // The parameters are in place before the job can start.
    this.params.set(id, params);
    try {
      return await this.queue.submit(
        method,
        model,
        async (dir) => {
          if (inputs.image) await writeFile(join(dir, INPUT_FILES.image), inputs.image);
          if (inputs.mask) await writeFile(join(dir, INPUT_FILES.mask), inputs.mask);
        },
        id,
      );
    } catch (error) {
      this.params.delete(id);
      throw error;
    }
  }

  async get(id: string) {
    return this.queue.get(id);
  }

  async subscribe(id: string, listener: (event: JobEvent) => void) {
    return this.queue.subscribe(id, listener);
  }

  async cancel(id: string) {
    return this.queue.cancel(id);
  }

  async readResult(id: string, file: string) {
    const job = this.queue.get(id);
    if (!job || !job.results.includes(file)) return undefined;
    return readFile(join(this.queue.dirOf(id), file));
  }

  async stats() {
    return {
      waiting: this.queue.length,
      running: this.queue.runningJob ? 1 : 0,
      counts: { ...this.queue.counts },
    };
  }

  async close() {
    await this.queue.close();
  }
}
