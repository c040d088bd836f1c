/**
 * `editkit serve`: an HTTP API (fastify, a schema on every route, OpenAPI at /api/docs) over an in-process job
 * queue, and the web app at /. Models are chosen by name from the configured folders, never by path; uploads and
 * results live in a data directory with a time-to-live; an optional bearer token; CORS off unless an origin is
 * given. Every bad request gets a 4xx with a JSON error.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { StableDiffusionBundle } from '../models/bundle.js';
import { deviceReport, type DeviceName } from '../runtime/device.js';
import { UserError } from '../util/errors.js';
import { caption } from '../world/caption.js';
import { encodePng, renderScene } from '../world/render.js';
import { sampleScene } from '../world/scene.js';
import { modelWorldSubset } from '../world/subsets.js';
import { LocalBackend, type JobBackend } from './backend.js';
import { ModelLoader } from './models.js';
import { QueueFullError, type JobEvent, type JobRecord } from './jobs.js';
import { METHOD_INPUTS, METHOD_NAMES, parseParams, type MethodName } from './methods.js';

export interface ServerOptions {
  /** Folders holding model bundles (a bundle itself, or a folder of bundles). */
  modelDirs: readonly string[];
  dataDir: string;
  device: DeviceName;
  threads?: number;
  maxQueued?: number;
  timeoutMs?: number;
  ttlMs?: number;
  /** Request body limit in bytes (default 25 MB). */
  bodyLimit?: number;
  token?: string;
  /** An allowed origin for CORS (default: CORS off). */
  cors?: string;
  /** The web app's folder (default: the package's web/). */
  webDir?: string;
  logger?: boolean;
  /** Folders of DiffusionCLIP deltas (`*.safetensors` from clip-finetune), by file name for `clip-edit`. */
  deltaDirs?: readonly string[];
  /** Another backend (e.g. Redis workers) instead of running jobs in this process. */
  backend?: (bundle: (model: string) => Promise<StableDiffusionBundle>) => JobBackend;
}

const RESULT_FILES = ['result.png', 'mask.png', 'side-by-side.png'] as const;

/** Delta name (the file name without .safetensors) → file, from the configured folders. */
export function discoverDeltas(dirs: readonly string[]): Map<string, string> {
  const deltas = new Map<string, string>();
  for (const dir of dirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw new UserError(`delta folder '${dir}' does not exist`);
    for (const file of readdirSync(dir))
      if (file.endsWith('.safetensors'))
        deltas.set(file.slice(0, -'.safetensors'.length), resolve(dir, file));
  }
  return deltas;
}

/** Model name → folder, from the configured folders (bundles are folders with model_index.json). */
export function discoverModels(dirs: readonly string[]): Map<string, string> {
  const models = new Map<string, string>();
  for (const dir of dirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw new UserError(`model folder '${dir}' does not exist`);
    if (existsSync(join(dir, 'model_index.json'))) {
      models.set(basename(resolve(dir)), resolve(dir));
      continue;
    }
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory() && existsSync(join(dir, entry.name, 'model_index.json')))
        models.set(entry.name, resolve(dir, entry.name));
    }
  }
  if (models.size === 0)
    throw new UserError(`no model bundle (a folder with model_index.json) in ${dirs.join(', ')}`);
  return models;
}

const jobSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    method: { type: 'string' },
    model: { type: 'string' },
    state: { type: 'string', enum: ['queued', 'running', 'done', 'failed', 'cancelled'] },
    createdAt: { type: 'string' },
    startedAt: { type: 'string' },
    finishedAt: { type: 'string' },
    progress: {
      type: 'object',
      properties: {
        stage: { type: 'string' },
        step: { type: 'number' },
        total: { type: 'number' },
        etaSeconds: { type: ['number', 'null'] },
      },
    },
    error: { type: 'string' },
    results: { type: 'object', additionalProperties: { type: 'string' } },
    events: { type: 'string' },
  },
} as const;
const errorSchema = {
  type: 'object',
  properties: { error: { type: 'string' } },
  required: ['error'],
} as const;
const idParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

function view(job: JobRecord) {
  const base = `/api/v1/jobs/${job.id}`;
  return {
    ...job,
    results: Object.fromEntries(job.results.map((f) => [f.replace(/\.png$/, ''), `${base}/${f}`])),
    events: `${base}/events`,
  };
}

function decodeBase64Image(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || value.length === 0)
    throw new UserError(`${field} must be a base64 PNG/JPEG/WebP`);
  const data = value.replace(/^data:image\/[a-z+]+;base64,/, '');
  if (!/^[A-Za-z0-9+/=\s]+$/.test(data)) throw new UserError(`${field} is not base64`);
  return Buffer.from(data, 'base64');
}

export async function buildServer(
  options: ServerOptions,
): Promise<{ app: FastifyInstance; backend: JobBackend }> {
  const models = discoverModels(options.modelDirs);
  const defaultModel = models.has('emoji-ldm') ? 'emoji-ldm' : [...models.keys()][0];
  const loader = new ModelLoader(models, { device: options.device, threads: options.threads });
  const bundle = (name: string) => loader.load(name);
  const deltas = discoverDeltas(options.deltaDirs ?? []);
  const backend: JobBackend =
    options.backend?.(bundle) ??
    new LocalBackend(
      {
        dataDir: options.dataDir,
        maxQueued: options.maxQueued,
        timeoutMs: options.timeoutMs,
        ttlMs: options.ttlMs,
      },
      bundle,
      (name) => deltas.get(name),
    );

  const app = Fastify({ logger: options.logger ?? false, bodyLimit: options.bodyLimit ?? 25 * 1024 * 1024 });
  await app.register(swagger, {
    openapi: {
      info: { title: 'EditKit', version: '1', description: 'Diffusion image editing: jobs for every method' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });
  await app.register(multipart, {
    limits: { fileSize: options.bodyLimit ?? 25 * 1024 * 1024, files: 2, fields: 4 },
  });

  app.setErrorHandler(
    (error: Error & { statusCode?: number; code?: string; validation?: unknown }, _req, reply) => {
      if (error instanceof UserError) return reply.code(400).send({ error: error.message });
      if (error instanceof QueueFullError)
        return reply
          .code(429)
          .header('retry-after', String(error.retryAfterSeconds))
          .send({ error: error.message });
      const status =
        error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
      if (status === 500) app.log.error(error);
      return reply.code(status).send({ error: status === 500 ? 'internal error' : error.message });
    },
  );
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );

  app.addHook('onRequest', async (req, reply) => {
    if (options.cors) {
      reply.header('access-control-allow-origin', options.cors);
      reply.header('access-control-allow-headers', 'authorization, content-type');
      reply.header('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
      if (req.method === 'OPTIONS') return reply.code(204).send();
    }
    if (options.token && req.url.startsWith('/api/v1/')) {
      const auth = req.headers.authorization ?? '';
      const fromQuery = new URL(req.url, 'http://x').searchParams.get('token');
      if (auth !== `Bearer ${options.token}` && fromQuery !== options.token)
        return reply.code(401).send({ error: 'missing or wrong bearer token' });
    }
  });

  app.post(
    '/api/v1/jobs',
    {
      schema: {
        description:
          'Queue a job. JSON: {method, model?, params?, image? (base64), mask? (base64)}; or multipart with fields method, model, params (JSON) and files image, mask.',
        body: {
          type: 'object',
          properties: {
            method: { type: 'string', enum: METHOD_NAMES },
            model: { type: 'string' },
            params: { type: 'object' },
            image: { type: 'string' },
            mask: { type: 'string' },
          },
          required: ['method'],
        },
        response: { 202: jobSchema, 400: errorSchema, 429: errorSchema },
      },
      validatorCompiler: ({ schema }) => {
        // Multipart bodies are parsed by hand below; JSON bodies get the schema's checks there too.
        void schema;
        return () => true;
      },
    },
    async (req: FastifyRequest, reply: FastifyReply) => {
      let fields: Record<string, unknown> = {};
      const files: Partial<Record<'image' | 'mask', Buffer>> = {};
      if (req.isMultipart()) {
        for await (const part of req.parts()) {
          if (part.type === 'file') {
            if (part.fieldname !== 'image' && part.fieldname !== 'mask')
              throw new UserError(`unexpected file field '${part.fieldname}'`);
            files[part.fieldname] = await part.toBuffer();
          } else fields[part.fieldname] = part.value;
        }
        if (typeof fields.params === 'string') {
          try {
            fields.params = JSON.parse(fields.params);
          } catch {
            throw new UserError('params must be a JSON object');
          }
        }
      } else {
        if (!req.body || typeof req.body !== 'object')
          throw new UserError('send JSON or multipart/form-data');
        fields = req.body as Record<string, unknown>;
        if (fields.image !== undefined) files.image = decodeBase64Image(fields.image, 'image');
        if (fields.mask !== undefined) files.mask = decodeBase64Image(fields.mask, 'mask');
      }
      const method = fields.method;
      if (typeof method !== 'string' || !(METHOD_NAMES as string[]).includes(method))
        throw new UserError(`method must be one of ${METHOD_NAMES.join(', ')}`);
      const model = fields.model === undefined || fields.model === '' ? defaultModel : fields.model;
      if (typeof model !== 'string' || !models.has(model))
        throw new UserError(`unknown model '${String(model)}'; available: ${[...models.keys()].join(', ')}`);
      const parsed = parseParams(method as MethodName, fields.params);
      if (method === 'clip-edit') {
        for (const d of parsed.deltas as { name: string }[])
          if (!deltas.has(d.name))
            throw new UserError(
              `unknown delta '${d.name}'; available: ${[...deltas.keys()].join(', ') || 'none (start with --deltas DIR)'}`,
            );
      }
      const needs = METHOD_INPUTS[method as MethodName];
      if (needs.image === 'required' && !files.image) throw new UserError(`${method} needs an image`);
      if (needs.image === 'none' && files.image) throw new UserError(`${method} takes no image`);
      if (needs.mask === 'required' && !files.mask) throw new UserError(`${method} needs a mask`);
      if (needs.mask === 'none' && files.mask) throw new UserError(`${method} takes no mask`);
      const job = await backend.submit(method as MethodName, model, parsed, files);
      return reply.code(202).send(view(job));
    },
  );

  const getJob = async (id: string) => {
    const job = await backend.get(id);
    if (!job) throw Object.assign(new Error(`no job ${id}`), { statusCode: 404 });
    return job;
  };

  app.get(
    '/api/v1/jobs/:id',
    { schema: { params: idParams, response: { 200: jobSchema, 404: errorSchema } } },
    async (req) => view(await getJob((req.params as { id: string }).id)),
  );

  app.delete(
    '/api/v1/jobs/:id',
    {
      schema: {
        description: 'Cancel: a queued job is dropped, a running one stops at its next step.',
        params: idParams,
        response: { 202: jobSchema, 404: errorSchema },
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      await getJob(id);
      return reply.code(202).send(view((await backend.cancel(id))!));
    },
  );

  app.get(
    '/api/v1/jobs/:id/events',
    {
      schema: {
        description:
          'Server-Sent Events: queued, progress (stage, step, total, ETA), done, failed, cancelled.',
        params: idParams,
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      await getJob(id);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        ...(options.cors ? { 'access-control-allow-origin': options.cors } : {}),
      });
      let closed = false;
      const send = (event: JobEvent) => {
        if (closed) return;
        res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
        if (event.type === 'done' || event.type === 'failed' || event.type === 'cancelled') {
          closed = true;
          res.end();
        }
      };
      const unsubscribe = await backend.subscribe(id, send);
      req.raw.on('close', () => {
        closed = true;
        unsubscribe();
      });
      if (closed) unsubscribe();
    },
  );

  app.get(
    '/api/v1/jobs/:id/:file',
    {
      schema: {
        params: {
          type: 'object',
          properties: { id: idParams.properties.id, file: { type: 'string', enum: [...RESULT_FILES] } },
          required: ['id', 'file'],
        },
      },
    },
    async (req, reply) => {
      const { id, file } = req.params as { id: string; file: string };
      const job = await getJob(id);
      if (job.state !== 'done') return reply.code(409).send({ error: `job ${id} is ${job.state}` });
      const data = job.results.includes(file) ? await backend.readResult(id, file) : undefined;
      if (!data) return reply.code(404).send({ error: `job ${id} has no ${file}` });
      return reply.type('image/png').send(data);
    },
  );

  app.get(
    '/api/v1/models',
    {
      schema: {
        response: {
          200: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                name: { type: 'string' },
                default: { type: 'boolean' },
                loaded: { type: 'boolean' },
              },
            },
          },
        },
      },
    },
    async () =>
      [...models.keys()].map((name) => ({
        name,
        default: name === defaultModel,
        loaded: loader.isLoaded(name),
      })),
  );
  app.get('/api/v1/deltas', async () => [...deltas.keys()].map((name) => ({ name })));
  app.get('/api/v1/devices', async () => {
    const r = await deviceReport();
    return { devices: r.devices, auto: r.auto, serving: options.device };
  });
  app.get('/api/v1/methods', async () => METHOD_NAMES.map((name) => ({ name, inputs: METHOD_INPUTS[name] })));
  app.get(
    '/api/v1/world/random',
    {
      schema: {
        description:
          "A random EmojiWorld scene at the default model's size and subset, as PNG (caption in x-caption).",
        querystring: {
          type: 'object',
          properties: { seed: { type: 'integer', minimum: 0, maximum: 2147483647 } },
        },
      },
    },
    async (req, reply) => {
      const seed = (req.query as { seed?: number }).seed ?? Math.floor(Math.random() * 1e9);
      const dir = models.get(defaultModel)!;
      const scene = sampleScene(seed, modelWorldSubset(dir).scene);
      const rendered = await renderScene(scene);
      return reply
        .type('image/png')
        .header('x-caption', caption(scene))
        .send(await encodePng(rendered.image, scene.width, scene.height, 3));
    },
  );
  app.get('/healthz', async () => {
    const stats = await backend.stats();
    return { ok: true, queued: stats.waiting, running: stats.running > 0 };
  });
  app.get('/metrics', async (_req, reply) => {
    const stats = await backend.stats();
    const counts = stats.counts;
    const lines = [
      '# HELP editkit_jobs_total Jobs by outcome since start.',
      '# TYPE editkit_jobs_total counter',
      ...(['done', 'failed', 'cancelled', 'refused'] as const).map(
        (s) => `editkit_jobs_total{state="${s}"} ${counts[s] ?? 0}`,
      ),
      `editkit_jobs_total{state="submitted"} ${counts.queued ?? 0}`,
      '# HELP editkit_queue_length Jobs waiting.',
      '# TYPE editkit_queue_length gauge',
      `editkit_queue_length ${stats.waiting}`,
      '# HELP editkit_job_running Whether a job is running.',
      '# TYPE editkit_job_running gauge',
      `editkit_job_running ${stats.running}`,
      '# HELP process_resident_memory_bytes Resident memory.',
      '# TYPE process_resident_memory_bytes gauge',
      `process_resident_memory_bytes ${process.memoryUsage().rss}`,
    ];
    return reply.type('text/plain; version=0.0.4').send(`${lines.join('\n')}\n`);
  });

  // The web app: plain ES modules, no build step (see web/README.md).
  const webDir = options.webDir ?? resolve(import.meta.dirname, '..', '..', 'web');
  const types: Record<string, string> = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
  };
  app.get('/', async (_req, reply) =>
    reply.type(types['.html']).send(readFileSync(join(webDir, 'index.html'))),
  );
  app.get('/web/:file', async (req, reply) => {
    const file = (req.params as { file: string }).file;
    if (!/^[\w.-]+$/.test(file) || !types[extname(file)] || !existsSync(join(webDir, file)))
      return reply.code(404).send({ error: `no file ${file}` });
    return reply.type(types[extname(file)]).send(readFileSync(join(webDir, file)));
  });

  app.addHook('onClose', async () => {
    await backend.close();
    await loader.release();
  });
  return { app, backend };
}
