import { existsSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { ModelError, UserError } from '../util/errors.js';
import { executionProviders, explainProviderFailure, type ResolvedDevice } from './device.js';
import { fromFloat16Array, toFloat16Array } from './float16.js';
import { NDArray } from './ndarray.js';

/** Integer input (token ids, timesteps); converted to the session's int32 or int64 at the boundary. */
export class IntArray {
  constructor(
    readonly data: Int32Array,
    readonly shape: readonly number[],
  ) {}
}

export type Feed = NDArray | IntArray;

export interface TensorInfo {
  name: string;
  type: ort.Tensor.Type;
  /** Numbers for fixed dimensions, strings for symbolic ones (e.g. 'batch'). */
  shape: ReadonlyArray<number | string>;
}

export interface SessionOptions {
  device: ResolvedDevice;
  /** Threads for the CPU provider; ORT's default (all cores) when omitted. */
  intraOpNumThreads?: number;
  /**
   * ORT's CPU memory arena (default on). The arena keeps what it once allocated and grows in powers of two; off,
   * every tensor is a plain allocation, returned when freed, so the peak follows the live set (gradient models
   * with checkpointing).
   */
  cpuMemoryArena?: boolean;
  /**
   * ORT's weight pre-packing (default on): MatMul/Conv weights are re-laid out once at load, a second copy of them.
   * Off saves that memory at some speed (large models on small machines).
   */
  prepacking?: boolean;
  /**
   * ORT's graph optimisations (default 'all'). 'all' adds layout transforms (NCHWc convolutions on x86) that keep
   * re-laid-out copies of the weights; 'extended' skips them.
   */
  graphOptimizationLevel?: 'basic' | 'extended' | 'all';
}

// One WebGPU/CUDA run at a time per process: concurrent WebGPU sessions can crash ORT (onnxruntime#32561),
// and a single GPU gains nothing from interleaving our strictly sequential denoising loops anyway.
let gpuQueue: Promise<unknown> = Promise.resolve();

/**
 * An ONNX Runtime session with dtype handling at the boundary: callers always pass and receive float32
 * NDArrays (and IntArrays for ids), whatever the model stores (fp16 weights and I/O, int32 vs int64 ids).
 */
export class ModelSession {
  /** Runs in progress; an unload waits for none. */
  private running = 0;
  /** The native session, or the promise of its reload after {@link unload}. */
  private loaded: Promise<ort.InferenceSession> | undefined;
  private released = false;

  private constructor(
    readonly path: string,
    readonly device: ResolvedDevice,
    session: ort.InferenceSession,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    readonly inputs: ReadonlyMap<string, TensorInfo>,
    readonly outputs: ReadonlyMap<string, TensorInfo>,
  ) {
    this.loaded = Promise.resolve(session);
  }

  static async create(path: string, options: SessionOptions): Promise<ModelSession> {
    if (!existsSync(path)) throw new ModelError(`model file '${path}' does not exist`);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(options.device),
      graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
      // ORT's warnings (e.g. VerifyEachNodeIsAssignedToAnEp on GPU providers, which place shape ops on the CPU on
      // purpose) are not the user's business; errors still surface as exceptions. EDITKIT_DEBUG=1 shows them.
      logSeverityLevel: process.env.EDITKIT_DEBUG ? 2 : 3,
    };
    if (options.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = options.intraOpNumThreads;
    if (options.cpuMemoryArena === false) sessionOptions.enableCpuMemArena = false;
    if (options.prepacking === false) sessionOptions.extra = { session: { disable_prepacking: '1' } };
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(path, sessionOptions);
    } catch (error) {
      throw explainLoadFailure(path, options.device, error);
    }
    return new ModelSession(
      path,
      options.device,
      session,
      sessionOptions,
      metadataMap(session.inputMetadata),
      metadataMap(session.outputMetadata),
    );
  }

  input(name: string): TensorInfo {
    const info = this.inputs.get(name);
    if (!info) {
      throw new ModelError(
        `'${this.path}' has no input '${name}' (its inputs: ${[...this.inputs.keys()].join(', ')})`,
      );
    }
    return info;
  }

  hasInput(name: string): boolean {
    return this.inputs.has(name);
  }

  hasOutput(name: string): boolean {
    return this.outputs.has(name);
  }

  /** Runs the model; every requested output comes back as a float32 NDArray. */
  async run(feeds: Record<string, Feed>, outputNames?: readonly string[]): Promise<Record<string, NDArray>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, value] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(value, this.input(name));
    const fetch = outputNames ?? [...this.outputs.keys()];
    if (this.released) throw new ModelError(`the session of '${this.path}' was released`);
    this.running++;
    try {
      const session = await (this.loaded ??= this.reload());
      const execute = () => session.run(ortFeeds, fetch as string[]);
      const results =
        this.device === 'cpu' ? await execute() : await (gpuQueue = gpuQueue.then(execute, execute));
      const out: Record<string, NDArray> = {};
      for (const name of fetch) out[name] = fromOrtTensor(results[name] as ort.Tensor, name, this.path);
      return out;
    } finally {
      this.running--;
    }
  }

  /** Whether the native session (and the memory of its weights) is held now. */
  get isLoaded(): boolean {
    return this.loaded !== undefined;
  }

  /**
   * Frees the native session and its weights while the model is not needed (a pipeline that runs its own variant
   * of the UNet: SD 1.5's is 3.4 GB plus ONNX Runtime's pre-packed copies); the next run loads it again from its
   * file. Refused (false) while a run is in progress or when the file is gone (sessions of in-memory models).
   */
  async unload(): Promise<boolean> {
    if (this.running > 0 || !this.loaded || !existsSync(this.path)) return false;
    const session = this.loaded;
    this.loaded = undefined;
    await (await session).release();
    return true;
  }

  private async reload(): Promise<ort.InferenceSession> {
    try {
      return await ort.InferenceSession.create(this.path, this.sessionOptions);
    } catch (error) {
      this.loaded = undefined;
      throw explainLoadFailure(this.path, this.device, error);
    }
  }

  async release(): Promise<void> {
    this.released = true;
    const session = this.loaded;
    this.loaded = undefined;
    if (session) await (await session).release();
  }
}

function metadataMap(list: readonly ort.InferenceSession.ValueMetadata[]): Map<string, TensorInfo> {
  const map = new Map<string, TensorInfo>();
  for (const m of list) {
    if (m.isTensor) map.set(m.name, { name: m.name, type: m.type, shape: m.shape });
  }
  return map;
}

function toOrtTensor(value: Feed, info: TensorInfo): ort.Tensor {
  const dims = [...value.shape];
  if (value instanceof IntArray) {
    switch (info.type) {
      case 'int32':
        return new ort.Tensor('int32', value.data, dims);
      case 'int64':
        return new ort.Tensor(
          'int64',
          BigInt64Array.from(value.data, (v) => BigInt(v)),
          dims,
        );
      case 'float32':
        return new ort.Tensor('float32', Float32Array.from(value.data), dims);
      case 'float16':
        return new ort.Tensor('float16', toFloat16Array(Float32Array.from(value.data)), dims);
    }
  } else {
    switch (info.type) {
      case 'float32':
        return new ort.Tensor('float32', value.data, dims);
      case 'float16':
        return new ort.Tensor('float16', toFloat16Array(value.data), dims);
      case 'float64':
        return new ort.Tensor('float64', Float64Array.from(value.data), dims);
      case 'int64':
        return new ort.Tensor(
          'int64',
          BigInt64Array.from(value.data, (v) => BigInt(Math.round(v))),
          dims,
        );
      case 'int32':
        return new ort.Tensor(
          'int32',
          Int32Array.from(value.data, (v) => Math.round(v)),
          dims,
        );
    }
  }
  throw new ModelError(`input '${info.name}' has type ${info.type}, which EditKit cannot feed`);
}

function fromOrtTensor(tensor: ort.Tensor, name: string, path: string): NDArray {
  const dims = tensor.dims.map(Number);
  switch (tensor.type) {
    case 'float32':
      return new NDArray(tensor.data as Float32Array, dims);
    case 'float16':
      return new NDArray(fromFloat16Array(tensor.data as Uint16Array), dims);
    case 'float64':
    case 'int32':
    case 'int8':
    case 'uint8':
      return new NDArray(Float32Array.from(tensor.data as ArrayLike<number>), dims);
    case 'int64':
      return new NDArray(
        Float32Array.from(tensor.data as BigInt64Array, (v) => Number(v)),
        dims,
      );
    default:
      throw new ModelError(
        `output '${name}' of '${path}' has type ${tensor.type}, which EditKit cannot read`,
      );
  }
}

function explainLoadFailure(path: string, device: ResolvedDevice, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  const provider = explainProviderFailure(device, message);
  if (provider) return new UserError(provider);
  const external = /(?:external|data).*?['"]?([^\s'"]+\.(?:onnx_data|pb|data|bin))/i.exec(message);
  if (
    /external data|onnx_data|weights\.pb/i.test(message) ||
    (external && /exist|open|find/i.test(message))
  ) {
    return new ModelError(
      `'${path}' refers to an external weight file that could not be read${external ? ` ('${external[1]}')` : ''}: keep the .onnx_data/weights.pb file next to model.onnx`,
    );
  }
  if (/protobuf|parse|Load model/i.test(message)) {
    return new ModelError(`'${path}' is not a valid ONNX model: ${firstLine(message)}`);
  }
  return new ModelError(`could not load '${path}' on ${device}: ${firstLine(message)}`);
}

function firstLine(message: string): string {
  return message.split('\n')[0].slice(0, 300);
}
