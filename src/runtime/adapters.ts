/**
 * What WebGPU would run on, found without disturbing the user's terminal.
 *
 * On Linux, onnxruntime-node's WebGPU provider (Dawn) runs on Vulkan. Which Vulkan drivers (ICDs) the loader sees
 * says what kind of adapter WebGPU gets: a real GPU (NVIDIA, AMD, Intel…) or a CPU rasteriser (SwiftShader,
 * Mesa's lavapipe/llvmpipe), which is correct but 100× slower than ONNX Runtime's own CPU provider. Creating a
 * session is the only proof that an adapter works, and on many machines Dawn and Mesa print native warnings while
 * trying (`XDG_RUNTIME_DIR is invalid…`, `Vulkan … at InitializeImpl`), so the probe runs in a child process whose
 * stderr is kept, not shown.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, join } from 'node:path';

export type AdapterKind = 'gpu' | 'cpu';

export interface VulkanDriver {
  /** A readable name for the driver (from its library). */
  name: string;
  kind: AdapterKind;
  /** The ICD manifest and the library it names. */
  manifest: string;
  library: string;
}

/** Software Vulkan drivers: WebGPU on them is a CPU adapter. */
const CPU_DRIVERS: readonly [RegExp, string][] = [
  [/swiftshader/i, 'SwiftShader (CPU)'],
  [/lvp|lavapipe|llvmpipe/i, 'Mesa lavapipe (CPU)'],
];

const GPU_DRIVERS: readonly [RegExp, string][] = [
  [/nvidia/i, 'NVIDIA'],
  [/radeon|amdvlk|amd/i, 'AMD'],
  [/intel|anv/i, 'Intel'],
  [/freedreno|turnip/i, 'Qualcomm Adreno (Mesa)'],
  [/panfrost|panvk/i, 'Arm Mali (Mesa)'],
  [/broadcom|v3dv/i, 'Broadcom (Mesa)'],
  [/virtio|venus/i, 'virtio-gpu (Mesa)'],
  [/dozen|dzn/i, 'D3D12 (Mesa dozen)'],
];

/** Name and kind of a Vulkan driver from its library path (unknown drivers count as GPUs). */
export function classifyVulkanDriver(library: string): { name: string; kind: AdapterKind } {
  const file = basename(library);
  for (const [pattern, name] of CPU_DRIVERS) if (pattern.test(file)) return { name, kind: 'cpu' };
  for (const [pattern, name] of GPU_DRIVERS) if (pattern.test(file)) return { name, kind: 'gpu' };
  return { name: file, kind: 'gpu' };
}

/**
 * The ICD manifests the Vulkan loader would read: `VK_DRIVER_FILES` or `VK_ICD_FILENAMES` when set (they replace
 * the search), else the standard folders (`$XDG_CONFIG_DIRS`, `/etc`, `$XDG_DATA_DIRS`, `/usr/local/share`,
 * `/usr/share`, each `/vulkan/icd.d`).
 */
export function vulkanIcdManifests(env: NodeJS.ProcessEnv = process.env): string[] {
  const explicit = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  if (explicit) return explicit.split(':').filter((p) => p !== '' && existsSync(p));
  const roots = [
    ...(env.XDG_CONFIG_DIRS ?? '/etc/xdg').split(':'),
    '/etc',
    ...(env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':'),
    '/usr/local/share',
    '/usr/share',
  ];
  const found = new Set<string>();
  for (const root of roots) {
    if (!root) continue;
    const dir = join(root, 'vulkan', 'icd.d');
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names.sort()) if (name.endsWith('.json')) found.add(join(dir, name));
  }
  return [...found];
}

/** The Vulkan drivers the loader would offer Dawn (Linux; empty elsewhere). */
export function vulkanDrivers(env: NodeJS.ProcessEnv = process.env): VulkanDriver[] {
  if (process.platform !== 'linux') return [];
  const drivers: VulkanDriver[] = [];
  for (const manifest of vulkanIcdManifests(env)) {
    let library: string | undefined;
    try {
      const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { ICD?: { library_path?: unknown } };
      if (typeof parsed.ICD?.library_path === 'string') library = parsed.ICD.library_path;
    } catch {
      continue;
    }
    if (!library) continue;
    const resolved =
      isAbsolute(library) || !library.includes('/') ? library : join(dirname(manifest), library);
    drivers.push({ ...classifyVulkanDriver(resolved), manifest, library: resolved });
  }
  return drivers;
}

const PCI_VENDORS: Readonly<Record<string, string>> = {
  '0x10de': 'NVIDIA',
  '0x1002': 'AMD',
  '0x1022': 'AMD',
  '0x8086': 'Intel',
  '0x5143': 'Qualcomm',
  '0x13b5': 'Arm',
  '0x1af4': 'virtio',
};

/**
 * GPUs the kernel exposes (Linux: DRM cards' PCI vendors, and NVIDIA's device nodes). A hardware Vulkan driver
 * without any of these (Mesa installs Intel and AMD drivers everywhere) cannot give WebGPU a GPU adapter.
 */
export function gpuHardware(root = '/'): string[] {
  if (process.platform !== 'linux') return [];
  const found: string[] = [];
  const drm = join(root, 'sys', 'class', 'drm');
  let cards: string[] = [];
  try {
    cards = readdirSync(drm).filter((n) => /^card\d+$/.test(n));
  } catch {
    // no DRM: containers and headless servers
  }
  for (const card of cards.sort()) {
    try {
      const vendor = readFileSync(join(drm, card, 'device', 'vendor'), 'utf8')
        .trim()
        .toLowerCase();
      found.push(PCI_VENDORS[vendor] ?? vendor);
    } catch {
      // a card without a PCI vendor file
    }
  }
  if (existsSync(join(root, 'dev', 'nvidia0')) && !found.includes('NVIDIA')) found.push('NVIDIA');
  return found;
}

export interface WebGpuProbe {
  /** A WebGPU session could be created. */
  ok: boolean;
  /** ORT's error, first line, when it could not. */
  error?: string;
  /** What the native libraries printed meanwhile (kept off the terminal; `editkit devices --verbose` shows it). */
  nativeOutput: string;
  seconds: number;
}

// The child: create a session on a one-node model with the WebGPU provider, report as one JSON line.
const PROBE_PROGRAM = `
const [ortPath, model] = process.argv.slice(1);
const { default: ort } = await import(ortPath);
try {
  const session = await ort.InferenceSession.create(Buffer.from(model, 'base64'), {
    executionProviders: ['webgpu'], logSeverityLevel: 3,
  });
  await session.release();
  process.stdout.write(JSON.stringify({ ok: true }) + '\\n');
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message || error) }) + '\\n');
}
process.exit(0);
`;

/** Creates a WebGPU session in a child process (so native noise stays off this process's stderr). */
export function probeWebGpuInChild(
  identityModel: Uint8Array,
  timeoutMs = 30_000,
  env: NodeJS.ProcessEnv = process.env,
): Promise<WebGpuProbe> {
  const started = performance.now();
  const require = createRequire(import.meta.url);
  const ortPath = require.resolve('onnxruntime-node');
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', PROBE_PROGRAM, ortPath, Buffer.from(identityModel).toString('base64')],
      { stdio: ['ignore', 'pipe', 'pipe'], env },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const finish = (fallback: string) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const line = stdout.trim().split('\n').at(-1) ?? '';
      try {
        const parsed = JSON.parse(line) as { ok: boolean; error?: string };
        const error = parsed.error?.split('\n').find((l) => l.trim() !== '');
        resolve({
          ok: parsed.ok,
          error: error ? shortenOrtError(error) : undefined,
          nativeOutput: stderr,
          seconds,
        });
      } catch {
        resolve({ ok: false, error: fallback, nativeOutput: stderr, seconds });
      }
    };
    child.on('error', (error) => finish(`cannot start the probe: ${error.message}`));
    child.on('exit', (code, signal) =>
      finish(
        signal === 'SIGKILL'
          ? 'the WebGPU probe timed out'
          : `the WebGPU probe exited with ${code ?? signal}`,
      ),
    );
  });
}

/**
 * Environment settings that keep Mesa's and Dawn's native messages off the terminal when WebGPU runs in this
 * process:
 *  - `NODEVICE_SELECT=1` turns off Mesa's implicit device-select layer, which only reorders adapters and prints
 *    `XDG_RUNTIME_DIR is invalid…` where no display server is reachable;
 *  - without a user's `VK_ICD_FILENAMES`/`VK_DRIVER_FILES`, the loader is pointed at every driver but lavapipe,
 *    which Dawn refuses with a `shaderUniform*ArrayDynamicIndexing` warning (Mesa 22). The caller keeps this only
 *    when an adapter still works without lavapipe.
 */
export function quietVulkanEnvironment(
  drivers: readonly VulkanDriver[],
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const changes: Record<string, string> = {};
  if (process.platform !== 'linux') return changes;
  if (env.NODEVICE_SELECT === undefined) changes.NODEVICE_SELECT = '1';
  if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES) {
    const kept = drivers.filter((d) => !/lavapipe/i.test(d.name));
    if (kept.length > 0 && kept.length < drivers.length)
      changes.VK_ICD_FILENAMES = kept.map((d) => d.manifest).join(':');
  }
  return changes;
}

/** ORT's adapter failure names its source file first; keep what a user can read. */
function shortenOrtError(message: string): string {
  const adapter = /Failed to get a WebGPU adapter:?\s*(.*)$/i.exec(message);
  if (adapter) return `no WebGPU adapter (${adapter[1].trim() || 'none found'})`;
  return message.replace(/^\S*\.cc:\d+ \S+ /, '').slice(0, 300);
}
