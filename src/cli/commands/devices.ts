import { Command } from 'commander';
import { deviceReport } from '../../runtime/device.js';

/** `editkit devices`: the execution providers, WebGPU's adapters, and what `--device auto` picks. */
export function devicesCommand(): Command {
  return new Command('devices')
    .description("list execution providers and GPU adapters, and say what '--device auto' would pick")
    .option('--json', 'print one JSON object on stdout', false)
    .option('--verbose', 'also show what the GPU libraries printed while probing (normally hidden)', false)
    .action(async (options: { json: boolean; verbose: boolean }) => {
      const report = await deviceReport();
      const { devices, auto: choice, webgpu } = report;
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({
            devices,
            auto: choice,
            vulkanLoader: report.vulkanLoader,
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
