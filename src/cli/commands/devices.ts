import { Command } from 'commander';
import {
  autoDeviceChoice,
  cudaProviderInstalled,
  probeWebGpuStatus,
  vulkanLoaderPresent,
  type ResolvedDevice,
} from '../../runtime/device.js';

interface DeviceReport {
  name: ResolvedDevice;
  available: boolean;
  detail: string;
  adapters?: { name: string; type: 'gpu' | 'cpu'; library: string }[];
}

/** `editkit devices`: the execution providers, WebGPU's adapters, and what `--device auto` picks. */
export function devicesCommand(): Command {
  return new Command('devices')
    .description("list execution providers and GPU adapters, and say what '--device auto' would pick")
    .option('--json', 'print one JSON object on stdout', false)
    .option('--verbose', 'also show what the GPU libraries printed while probing (normally hidden)', false)
    .action(async (options: { json: boolean; verbose: boolean }) => {
      const webgpu = await probeWebGpuStatus();
      const cuda = cudaProviderInstalled();
      const choice = await autoDeviceChoice();
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
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({
            devices,
            auto: choice,
            vulkanLoader: vulkanLoaderPresent(),
            gpuHardware: webgpu.hardware,
            probeSeconds: Number(webgpu.seconds.toFixed(2)),
            ...(options.verbose ? { nativeOutput: webgpu.nativeOutput } : {}),
          })}\n`,
        );
        return;
      }
      const lines: string[] = [];
      for (const d of devices) {
        lines.push(`${d.available ? '✓' : '✗'} ${d.name.padEnd(7)} ${d.detail}`);
        for (const a of d.adapters ?? [])
          lines.push(`            Vulkan driver: ${a.name} [${a.type}] ${a.library}`);
      }
      lines.push(
        `GPUs the kernel shows: ${webgpu.hardware.length > 0 ? webgpu.hardware.join(', ') : 'none'}`,
        `--device auto → ${choice.device} (${choice.reason})`,
      );
      if (options.verbose && webgpu.nativeOutput.trim() !== '')
        lines.push('native output while probing WebGPU:', webgpu.nativeOutput.trimEnd());
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
