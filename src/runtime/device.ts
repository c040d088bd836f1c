import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { UserError } from '../util/errors.js';

/** Where the models run. `auto` picks CUDA if its provider libraries are installed, else WebGPU, else CPU. */
export type DeviceName = 'cpu' | 'webgpu' | 'cuda' | 'auto';
export type ResolvedDevice = Exclude<DeviceName, 'auto'>;

export const DEVICE_NAMES: readonly DeviceName[] = ['auto', 'cpu', 'webgpu', 'cuda'];

export function parseDevice(value: string): DeviceName {
  if ((DEVICE_NAMES as readonly string[]).includes(value)) return value as DeviceName;
  throw new UserError(`unknown device '${value}': use one of ${DEVICE_NAMES.join(', ')}`);
}

/**
 * The execution-provider list ORT gets for a device. WebGPU and CUDA keep no CPU fallback on purpose: a model
 * that silently runs on the CPU when the user asked for the GPU hides a real problem.
 */
export function executionProviders(device: ResolvedDevice): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device === 'webgpu' && !vulkanLoaderPresent()) {
    throw new UserError(
      'WebGPU needs a GPU with Vulkan drivers, and no Vulkan loader (libvulkan.so.1) is installed on this machine; use --device cpu',
    );
  }
  switch (device) {
    case 'cpu':
      return ['cpu'];
    case 'webgpu':
      return [{ name: 'webgpu' }];
    case 'cuda':
      return [{ name: 'cuda' }];
  }
}

/**
 * CUDA's provider library is only present when the user reinstalled onnxruntime-node with
 * `--onnxruntime-node-install=cuda12`; checking for the file avoids ORT printing a native error on every probe.
 */
export function cudaProviderInstalled(): boolean {
  try {
    const require = createRequire(import.meta.url);
    const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
    return existsSync(
      join(packageDir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'),
    );
  } catch {
    return false;
  }
}

/**
 * On Linux, ORT's WebGPU provider (Dawn) runs on Vulkan and prints a native warning to stderr when the loader
 * library is missing. Looking for it first keeps `--device auto` quiet on machines without a GPU stack.
 */
export function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/lib/x86_64-linux-gnu',
    '/usr/local/lib',
  ];
  if (dirs.some((dir) => existsSync(join(dir, 'libvulkan.so.1')))) return true;
  try {
    return readFileSync('/etc/ld.so.cache').includes('libvulkan.so.1');
  } catch {
    return false;
  }
}

let webgpuAvailable: Promise<boolean> | undefined;

/** Whether a WebGPU adapter exists, probed once per process with a one-node model. */
export function probeWebGpu(): Promise<boolean> {
  webgpuAvailable ??= (async () => {
    if (!vulkanLoaderPresent()) return false;
    try {
      const session = await ort.InferenceSession.create(IDENTITY_MODEL, { executionProviders: ['webgpu'] });
      await session.release();
      return true;
    } catch {
      return false;
    }
  })();
  return webgpuAvailable;
}

export async function resolveDevice(device: DeviceName): Promise<ResolvedDevice> {
  if (device !== 'auto') return device;
  if (cudaProviderInstalled()) return 'cuda';
  if (await probeWebGpu()) return 'webgpu';
  return 'cpu';
}

/** Turns ORT's long native message for an unavailable provider into one line the user can act on. */
export function explainProviderFailure(device: ResolvedDevice, message: string): string | undefined {
  if (device === 'webgpu' && /WebGPU adapter/i.test(message)) {
    return 'no WebGPU adapter was found on this machine (a GPU with Vulkan/Metal/D3D12 drivers is needed); use --device cpu';
  }
  if (device === 'cuda' && /providers_(shared|cuda)|CUDA/i.test(message)) {
    return 'the CUDA provider is not installed: reinstall with `npm install onnxruntime-node --onnxruntime-node-install=cuda12` (needs CUDA 12 and cuDNN 9), or use --device cpu';
  }
  return undefined;
}

// A minimal ONNX model (Identity on a float tensor), hand-encoded so probing needs no file on disk.
const IDENTITY_MODEL = Uint8Array.from(
  Buffer.from(
    'CAgSB2VkaXRraXQ6QwoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaEwoBeBIOCgwIARIICgIIAQoCCAFiEwoBeRIOCgwIARIICgIIAQoCCAFCBAoAEA4=',
    'base64',
  ),
);
