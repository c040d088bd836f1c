import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { buildServer } from '../../server/app.js';
import { RedisBackend } from '../../server/redis_backend.js';
import { parseDevice } from '../../runtime/device.js';
import {
  addJobRunnerOptions,
  bundledModelDir,
  checkRedisUrl,
  parseInteger,
  type JobRunnerOptions,
} from '../options.js';

interface ServeCliOptions extends JobRunnerOptions {
  host: string;
  port: number;
  data: string;
  maxQueued: number;
  bodyLimit: number;
  token?: string;
  cors?: string;
  queue?: string;
}

export function serveCommand(): Command {
  const command = new Command('serve')
    .description('HTTP API and web app for every method, with a job queue')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port', parseInteger('--port', 0, 65535), 8080)
    .option('--data <dir>', 'uploads and results', join(tmpdir(), 'editkit-serve'))
    .option(
      '--max-queued <n>',
      'jobs that may wait (more get 429)',
      parseInteger('--max-queued', 1, 10000),
      16,
    )
    .option('--body-limit <mb>', 'largest request in MB', parseInteger('--body-limit', 1, 1024), 25)
    .option('--token <secret>', 'require "Authorization: Bearer <secret>" on the API')
    .option('--cors <origin>', 'allow this origin (CORS is off by default)')
    .option(
      '--queue <url>',
      'run jobs on workers through Redis (redis://HOST:PORT; start them with `editkit worker`)',
    );
  addJobRunnerOptions(command);
  return command.action(async (options: ServeCliOptions) => {
    if (options.queue) checkRedisUrl(options.queue);
    const { app } = await buildServer({
      modelDirs: options.models ?? [dirname(bundledModelDir())],
      dataDir: options.data,
      device: parseDevice(options.device),
      threads: options.threads,
      maxQueued: options.maxQueued,
      timeoutMs: options.timeout * 1000,
      ttlMs: options.ttl * 1000,
      bodyLimit: options.bodyLimit * 1024 * 1024,
      token: options.token,
      cors: options.cors,
      deltaDirs: options.deltas,
      backend: options.queue
        ? () =>
            new RedisBackend({ url: options.queue!, maxQueued: options.maxQueued, ttlSeconds: options.ttl })
        : undefined,
    });
    const address = await app.listen({ host: options.host, port: options.port });
    process.stderr.write(`editkit serve: ${address} (API docs at ${address}/api/docs)\n`);
    const stop = () => void app.close().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
