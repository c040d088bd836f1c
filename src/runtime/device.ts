import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { UserError } from '../util/errors.js';
import {
  gpuHardware,
  probeWebGpuInChild,
  quietVulkanEnvironment,
  vulkanDrivers,
  type AdapterKind,
  type VulkanDriver,
} from './adapters.js';

/** Where the models run. `auto` picks CUDA if its provider is installed, else WebGPU on a real GPU, else CPU. */
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

export interface WebGpuStatus {
  /** A WebGPU session could be created. */
  available: boolean;
  /**
   * What the adapter is: a real GPU, a CPU rasteriser (SwiftShader, lavapipe: correct but far slower than the CPU
   * provider), or unknown (Linux without a readable Vulkan driver list).
   */
  adapter: AdapterKind | 'unknown';
  /** The Vulkan drivers the loader offers (Linux). */
  drivers: VulkanDriver[];
  /** GPUs the kernel exposes (Linux). */
  hardware: string[];
  /** Why WebGPU is unavailable, when it is. */
  reason?: string;
  /** What the native libraries printed during the probe (not shown unless asked for). */
  nativeOutput: string;
  seconds: number;
}

let webgpuStatus: Promise<WebGpuStatus> | undefined;

/** Whether WebGPU works here and on what kind of adapter; probed once per process, in a child process. */
export function probeWebGpuStatus(): Promise<WebGpuStatus> {
  webgpuStatus ??= (async (): Promise<WebGpuStatus> => {
    const drivers = vulkanDrivers();
    const hardware = gpuHardware();
    if (!vulkanLoaderPresent()) {
      return {
        available: false,
        adapter: 'unknown',
        drivers,
        hardware,
        reason: 'no Vulkan loader (libvulkan.so.1) is installed',
        nativeOutput: '',
        seconds: 0,
      };
    }
    // Probe under the quiet environment first; where that loses the only working adapter, under the user's own.
    const quiet = quietVulkanEnvironment(drivers);
    let probe = await probeWebGpuInChild(IDENTITY_MODEL, undefined, { ...process.env, ...quiet });
    let applied = quiet;
    if (!probe.ok && quiet.VK_ICD_FILENAMES !== undefined) {
      const { VK_ICD_FILENAMES: _dropped, ...rest } = quiet;
      void _dropped;
      const full = await probeWebGpuInChild(IDENTITY_MODEL, undefined, { ...process.env, ...rest });
      if (full.ok) {
        probe = full;
        applied = rest;
      }
    }
    // This process's WebGPU provider reads the environment when it first creates a session, after this.
    if (probe.ok) Object.assign(process.env, applied);
    // Dawn prefers a hardware adapter when one works; a hardware driver counts only where the kernel shows a GPU.
    const adapter: WebGpuStatus['adapter'] =
      process.platform !== 'linux'
        ? 'gpu'
        : drivers.some((d) => d.kind === 'gpu') && hardware.length > 0
          ? 'gpu'
          : drivers.length > 0
            ? 'cpu'
            : 'unknown';
    return {
      available: probe.ok,
      adapter,
      drivers,
      hardware,
      reason: probe.ok ? undefined : probe.error,
      nativeOutput: probe.nativeOutput,
      seconds: probe.seconds,
    };
  })();
  return webgpuStatus;
}

/** Whether a WebGPU adapter of any kind exists (`--device webgpu` takes a CPU adapter when asked for). */
export async function probeWebGpu(): Promise<boolean> {
  return (await probeWebGpuStatus()).available;
}

/**
 * `auto`: CUDA when its provider is installed, else WebGPU on a real GPU adapter, else the CPU. A CPU adapter
 * (SwiftShader, lavapipe) counts as no GPU: ONNX Runtime's CPU provider is ~100× faster than WebGPU on it.
 */
export async function resolveDevice(device: DeviceName): Promise<ResolvedDevice> {
  if (device === 'webgpu') {
    // Asked for by name: any adapter will do (a CPU one too), but find out quietly, in a child process, whether
    // one exists, rather than let Dawn print its search on the user's terminal.
    const status = await probeWebGpuStatus();
    if (!status.available)
      throw new UserError(
        `no WebGPU adapter was found on this machine (${(status.reason ?? 'WebGPU unavailable').replace(/^no WebGPU adapter \((.*)\)$/, '$1')}); WebGPU needs a GPU with working graphics drivers: use --device cpu`,
      );
    return device;
  }
  if (device !== 'auto') return device;
  return (await autoDeviceChoice()).device;
}

/** What `auto` picks, and why. */
export async function autoDeviceChoice(): Promise<{ device: ResolvedDevice; reason: string }> {
  if (cudaProviderInstalled()) return { device: 'cuda', reason: 'the CUDA provider is installed' };
  const webgpu = await probeWebGpuStatus();
  if (webgpu.available && webgpu.adapter === 'gpu')
    return { device: 'webgpu', reason: 'WebGPU has a GPU adapter' };
  if (webgpu.available)
    return {
      device: 'cpu',
      reason:
        webgpu.adapter === 'cpu'
          ? 'WebGPU only has a CPU adapter (a software Vulkan driver), slower than the CPU provider'
          : 'WebGPU works but its adapter could not be identified as a GPU',
    };
  return { device: 'cpu', reason: `no GPU provider: ${webgpu.reason ?? 'WebGPU unavailable'}` };
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

export interface DeviceReport {
  name: ResolvedDevice;
  available: boolean;
  detail: string;
  adapters?: { name: string; type: 'gpu' | 'cpu'; library: string }[];
}

/** What `editkit devices` and the server's /api/v1/devices show: each provider, WebGPU's adapters, auto's pick. */
export async function deviceReport(): Promise<{
  devices: DeviceReport[];
  auto: { device: ResolvedDevice; reason: string };
  vulkanLoader: boolean;
  webgpu: WebGpuStatus;
}> {
  const webgpu = await probeWebGpuStatus();
  const cuda = cudaProviderInstalled();
  const devices: DeviceReport[] = [
    { name: 'cpu', available: true, detail: "ONNX Runtime's CPU provider" },
    {
      name: 'webgpu',
      available: webgpu.available,
      detail: webgpu.available
        ? `a WebGPU session works (${webgpu.adapter === 'gpu' ? 'GPU adapter' : webgpu.adapter === 'cpu' ? 'CPU adapter: a software Vulkan driver, correct but slow' : 'adapter of unknown type'})`
        : (webgpu.reason ?? 'unavailable'),
      adapters: webgpu.drivers.map((d) => ({ name: d.name, type: d.kind, library: d.library })),
    },
    {
      name: 'cuda',
      available: cuda,
      detail: cuda
        ? 'the CUDA provider library is installed (needs CUDA 12 and cuDNN 9 at run time)'
        : 'not installed: npm install onnxruntime-node --onnxruntime-node-install=cuda12',
    },
  ];
  return { devices, auto: await autoDeviceChoice(), vulkanLoader: vulkanLoaderPresent(), webgpu };
}
