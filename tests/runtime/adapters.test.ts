import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  classifyVulkanDriver,
  gpuHardware,
  vulkanDrivers,
  vulkanIcdManifests,
} from '../../src/runtime/adapters.js';

const scratch = mkdtempSync(join(tmpdir(), 'editkit-adapters-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function icd(dir: string, name: string, library: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(
    path,
    JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: library, api_version: '1.3' } }),
  );
  return path;
}

describe('Vulkan drivers and GPU hardware', () => {
  it('tells software rasterisers from GPU drivers', () => {
    expect(classifyVulkanDriver('/usr/lib/chromium/libvk_swiftshader.so')).toEqual({
      name: 'SwiftShader (CPU)',
      kind: 'cpu',
    });
    expect(classifyVulkanDriver('/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so').kind).toBe('cpu');
    expect(classifyVulkanDriver('libGLX_nvidia.so.0')).toEqual({ name: 'NVIDIA', kind: 'gpu' });
    expect(classifyVulkanDriver('/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so')).toEqual({
      name: 'AMD',
      kind: 'gpu',
    });
    expect(classifyVulkanDriver('/usr/lib/x86_64-linux-gnu/libvulkan_intel.so').kind).toBe('gpu');
    expect(classifyVulkanDriver('/opt/x/libsomething_new.so')).toEqual({
      name: 'libsomething_new.so',
      kind: 'gpu',
    });
  });

  it.runIf(process.platform === 'linux')(
    'reads the manifests the loader would: explicit list, else the search folders',
    () => {
      const etc = join(scratch, 'etc');
      const share = join(scratch, 'share');
      const lvp = icd(
        join(share, 'vulkan', 'icd.d'),
        'lvp_icd.x86_64.json',
        '/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so',
      );
      const nv = icd(join(etc, 'vulkan', 'icd.d'), 'nvidia_icd.json', 'libGLX_nvidia.so.0');
      const swift = icd(join(scratch, 'chromium'), 'vk_swiftshader_icd.json', './libvk_swiftshader.so');
      const search = { XDG_CONFIG_DIRS: etc, XDG_DATA_DIRS: share };
      expect(vulkanIcdManifests(search)).toEqual(expect.arrayContaining([lvp, nv]));
      expect(vulkanIcdManifests({ ...search, VK_ICD_FILENAMES: `${swift}:/nonexistent.json` })).toEqual([
        swift,
      ]);
      expect(vulkanIcdManifests({ ...search, VK_DRIVER_FILES: swift, VK_ICD_FILENAMES: lvp })).toEqual([
        swift,
      ]);
      const drivers = vulkanDrivers({ VK_ICD_FILENAMES: `${swift}:${nv}` });
      expect(drivers.map((d) => [d.name, d.kind])).toEqual([
        ['SwiftShader (CPU)', 'cpu'],
        ['NVIDIA', 'gpu'],
      ]);
      // A relative library path is relative to its manifest.
      expect(drivers[0].library).toBe(join(scratch, 'chromium', 'libvk_swiftshader.so'));
    },
  );

  it.runIf(process.platform === 'linux')(
    'finds GPUs from DRM cards and NVIDIA device nodes, none in an empty root',
    () => {
      const root = join(scratch, 'root');
      expect(gpuHardware(root)).toEqual([]);
      for (const [card, vendor] of [
        ['card0', '0x8086'],
        ['card1', '0x10de'],
      ]) {
        mkdirSync(join(root, 'sys', 'class', 'drm', card, 'device'), { recursive: true });
        writeFileSync(join(root, 'sys', 'class', 'drm', card, 'device', 'vendor'), `${vendor}\n`);
      }
      mkdirSync(join(root, 'sys', 'class', 'drm', 'card0-HDMI-A-1'), { recursive: true });
      expect(gpuHardware(root)).toEqual(['Intel', 'NVIDIA']);
    },
  );
});
