import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelSession, type SessionOptions } from '../runtime/session.js';
import { saveModel, type ModelProto } from './onnx_io.js';

/**
 * An ONNX Runtime session for a model built in memory (a gradient model, a rewritten UNet). It goes through a
 * temporary file rather than a buffer so that models over protobuf's 2 GiB limit (SD's UNet with its gradient)
 * work too, with external data; ModelSession then gives the usual dtype handling at the boundary.
 */
export async function sessionFromModel(
  model: ModelProto,
  options: SessionOptions,
  label = 'model',
): Promise<ModelSession> {
  const dir = await mkdtemp(join(tmpdir(), 'editkit-model-'));
  try {
    const path = join(dir, `${label}.onnx`);
    await saveModel(model, path);
    return await ModelSession.create(path, options);
  } finally {
    // ORT has read (or mapped) the files by now; on POSIX a mapped file survives its unlinking.
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
