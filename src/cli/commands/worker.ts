import { dirname } from 'node:path';
import { Command } from 'commander';
import { StableDiffusionBundle } from '../../models/bundle.js';
import { parseDevice } from '../../runtime/device.js';
import { discoverDeltas, discoverModels } from '../../server/app.js';
import { startWorker } from '../../server/redis_backend.js';
import { UserError } from '../../util/errors.js';
import { bundledModelDir, parseInteger } from '../options.js';

interface WorkerCliOptions {
  queue: string;
  models?: string[];
  device: string;
  deltas?: string[];
  threads?: number;
  lockSeconds: number;
  timeout: number;
  ttl: number;
}

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'run jobs from a Redis queue that `editkit serve --queue redis://…` fills (one job at a time)',
    )
    .requiredOption('--queue <url>', 'redis://HOST:PORT')
    .option(
      '--models <dir>',
      'model bundles, by the same names as the server’s (repeatable)',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option(
      '--deltas <dir>',
      'a folder of DiffusionCLIP deltas for clip-edit jobs, by file name (repeatable)',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option('--device <name>', 'cpu|webgpu|cuda|auto', 'auto')
    .option('--threads <n>', 'CPU threads per model', parseInteger('--threads', 1, 1024))
    .option(
      '--lock-seconds <s>',
      'a job whose worker stops renewing its lock this long is run elsewhere',
      parseInteger('--lock-seconds', 1, 3600),
      30,
    )
    .option('--timeout <s>', 'seconds a job may run', parseInteger('--timeout', 1, 86400), 600)
    .option('--ttl <s>', 'seconds results stay in Redis', parseInteger('--ttl', 1, 30 * 86400), 3600)
    .action(async (options: WorkerCliOptions) => {
      if (!/^rediss?:\/\//.test(options.queue))
        throw new UserError(`--queue '${options.queue}' is not a redis:// URL`);
      const models = discoverModels(options.models ?? [dirname(bundledModelDir())]);
      const device = parseDevice(options.device);
      const bundles = new Map<string, Promise<StableDiffusionBundle>>();
      const bundle = (name: string) => {
        const dir = models.get(name);
        if (!dir) return Promise.reject(new UserError(`this worker has no model '${name}'`));
        let b = bundles.get(name);
        if (!b) {
          b = StableDiffusionBundle.load(dir, { device, intraOpNumThreads: options.threads });
          bundles.set(name, b);
        }
        return b;
      };
      const deltas = discoverDeltas(options.deltas ?? []);
      const { close } = await startWorker({
        url: options.queue,
        bundle,
        resolveDelta: (name) => deltas.get(name),
        lockMs: options.lockSeconds * 1000,
        timeoutMs: options.timeout * 1000,
        ttlSeconds: options.ttl,
        log: (line) => process.stderr.write(`editkit worker: ${line}\n`),
      });
      process.stderr.write(`editkit worker: waiting for jobs on ${options.queue}\n`);
      const stop = () => void close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
