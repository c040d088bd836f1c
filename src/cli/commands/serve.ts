import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { buildServer } from '../../server/app.js';
import { parseDevice } from '../../runtime/device.js';
import { bundledModelDir, parseInteger } from '../options.js';

interface ServeCliOptions {
  host: string;
  port: number;
  models?: string[];
  data: string;
  device: string;
  threads?: number;
  queue: number;
  timeout: number;
  ttl: number;
  bodyLimit: number;
  token?: string;
  cors?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('HTTP API and web app for every method, with a job queue')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port', parseInteger('--port', 0, 65535), 8080)
    .option(
      '--models <dir>',
      'a model bundle or a folder of bundles, by name in the API (repeatable; default: the bundled models)',
      (v: string, previous: string[] = []) => [...previous, v],
    )
    .option('--data <dir>', 'uploads and results', join(tmpdir(), 'editkit-serve'))
    .option('--device <name>', 'cpu|webgpu|cuda|auto', 'auto')
    .option('--threads <n>', 'CPU threads per model', parseInteger('--threads', 1, 1024))
    .option('--queue <n>', 'jobs that may wait (more get 429)', parseInteger('--queue', 1, 10000), 16)
    .option('--timeout <s>', 'seconds a job may run', parseInteger('--timeout', 1, 86400), 600)
    .option('--ttl <s>', 'seconds results are kept', parseInteger('--ttl', 1, 30 * 86400), 3600)
    .option('--body-limit <mb>', 'largest request in MB', parseInteger('--body-limit', 1, 1024), 25)
    .option('--token <secret>', 'require "Authorization: Bearer <secret>" on the API')
    .option('--cors <origin>', 'allow this origin (CORS is off by default)')
    .action(async (options: ServeCliOptions) => {
      const { app } = await buildServer({
        modelDirs: options.models ?? [dirname(bundledModelDir())],
        dataDir: options.data,
        device: parseDevice(options.device),
        threads: options.threads,
        maxQueued: options.queue,
        timeoutMs: options.timeout * 1000,
        ttlMs: options.ttl * 1000,
        bodyLimit: options.bodyLimit * 1024 * 1024,
        token: options.token,
        cors: options.cors,
      });
      const address = await app.listen({ host: options.host, port: options.port });
      process.stderr.write(`editkit serve: ${address} (API docs at ${address}/api/docs)\n`);
      const stop = () => void app.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
