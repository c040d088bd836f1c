import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ModelSession, type SessionOptions } from '../runtime/session.js';
import { saveModel, type ModelProto } from './onnx_io.js';
import type { CheckpointOptions } from './checkpoint.js';

/**
 * Session settings for a gradient model. Under checkpointing the live set rises and falls segment by segment:
 * ORT's arena would keep its high-water mark in power-of-two chunks, and pre-packing keeps a second, re-laid-out
 * copy of every MatMul/Conv weight (and of the backward ConvTranspose weights). Both are off there, which is what
 * brings an SD-1.5 drag iteration at 512² under 10 GB (measured by `npm run bench -- vs-torch`: 10.4 → 9.6 GB, at
 * most 8–16 % slower). Settings the caller gave explicitly win.
 */
export function gradientSessionSettings(
  settings: SessionOptions,
  checkpoint: CheckpointOptions | undefined,
): SessionOptions {
  if (!checkpoint) return settings;
  return {
    ...settings,
    cpuMemoryArena: settings.cpuMemoryArena ?? false,
    prepacking: settings.prepacking ?? false,
  };
}

/**
 * An ONNX Runtime session for a model built in memory (a gradient model, a rewritten UNet). It goes through a
 * temporary file rather than a buffer so that models over protobuf's 2 GiB limit (SD's UNet with its gradient)
 * work too, with external data; ModelSession then gives the usual dtype handling at the boundary.
 */
export async function sessionFromModel(
  model: ModelProto,
  options: SessionOptions,
  label = 'model',
  placement: { besides?: string } = {},
): Promise<ModelSession> {
  if (placement.besides) {
    // A model loaded with `externalData: false` still points at its weights file by a relative path: written next
    // to the original, ONNX Runtime reads the weights from there and JavaScript never holds a copy of them.
    const path = join(
      dirname(placement.besides),
      `.${label}.${process.pid}.${randomBytes(6).toString('hex')}.onnx`,
    );
    try {
      await saveModel(model, path);
      return await ModelSession.create(path, options);
    } finally {
      await rm(path, { force: true }).catch(() => undefined);
    }
  }
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
