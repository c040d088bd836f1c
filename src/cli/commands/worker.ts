import { dirname } from 'node:path';
import { Command } from 'commander';
import { parseDevice } from '../../runtime/device.js';
import { discoverDeltas, discoverModels } from '../../server/app.js';
import { startWorker } from '../../server/redis_backend.js';
import { ModelLoader } from '../../server/models.js';
import {
  addJobRunnerOptions,
  bundledModelDir,
  checkRedisUrl,
  parseInteger,
  type JobRunnerOptions,
} from '../options.js';

interface WorkerCliOptions extends JobRunnerOptions {
  queue: string;
  lockSeconds: number;
}

export function workerCommand(): Command {
  const command = new Command('worker')
    .description(
      'run jobs from a Redis queue that `editkit serve --queue redis://…` fills (one job at a time)',
    )
    .requiredOption('--queue <url>', 'redis://HOST:PORT')
    .option(
      '--lock-seconds <s>',
      'a job whose worker stops renewing its lock this long is run elsewhere',
      parseInteger('--lock-seconds', 1, 3600),
      30,
    );
  addJobRunnerOptions(command);
  return command.action(async (options: WorkerCliOptions) => {
    checkRedisUrl(options.queue);
    const models = discoverModels(options.models ?? [dirname(bundledModelDir())]);
    const loader = new ModelLoader(models, { device: parseDevice(options.device), threads: options.threads });
    const deltas = discoverDeltas(options.deltas ?? []);
    const { close } = await startWorker({
      url: options.queue,
      bundle: (name) => loader.load(name),
      resolveDelta: (name) => deltas.get(name),
      lockMs: options.lockSeconds * 1000,
      timeoutMs: options.timeout * 1000,
      ttlSeconds: options.ttl,
      log: (line) => process.stderr.write(`editkit worker: ${line}\n`),
    });
    process.stderr.write(`editkit worker: waiting for jobs on ${options.queue}\n`);
    const stop = () =>
      void close()
        .then(() => loader.release())
        .then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
