import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { clipEditCommand, clipFinetuneCommand } from './commands/diffusion_clip.js';
import { devicesCommand } from './commands/devices.js';
import { evalCommand } from './commands/eval.js';
import { serveCommand } from './commands/serve.js';
import { workerCommand } from './commands/worker.js';
import { dragCommand } from './commands/drag.js';
import { editCommand } from './commands/edit.js';
import { generateCommand } from './commands/generate.js';
import { img2imgCommand } from './commands/img2img.js';
import { inpaintCommand } from './commands/inpaint.js';
import { invertCommand } from './commands/invert.js';
import { worldCommand } from './commands/world.js';

export function buildProgram(): Command {
  const program = new Command('editkit')
    .description('Diffusion-based image editing on ONNX Runtime')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const command of [
    generateCommand(),
    img2imgCommand(),
    inpaintCommand(),
    invertCommand(),
    editCommand(),
    dragCommand(),
    clipFinetuneCommand(),
    clipEditCommand(),
    evalCommand(),
    serveCommand(),
    workerCommand(),
    worldCommand(),
    devicesCommand(),
  ]) {
    program.addCommand(command.showHelpAfterError('(run with --help for usage)').exitOverride());
  }
  return program;
}

/** Runs the CLI; returns the exit code: 0 ok, 2 user error, 1 internal error. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof UserError) {
      process.stderr.write(`editkit: error: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`editkit: internal error: ${message}\n`);
    if (process.env.EDITKIT_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    else process.stderr.write('(set EDITKIT_DEBUG=1 for the stack trace, and please report it)\n');
    return 1;
  }
}
