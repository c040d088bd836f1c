import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { UserError } from './errors.js';

/**
 * Write `data` to `path` so that readers only ever see the old file or the complete new one.
 *
 * The data goes to a temporary file next to the target (same directory, hence same filesystem, so the final
 * rename is atomic on POSIX and replaces the target on Windows too) and is fsynced before the rename, so a crash
 * cannot leave a truncated image or array behind a valid-looking name. On any failure the temporary file is
 * removed and the target is left untouched. The parent directory must exist (see {@link ensureParentDir}).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  // Dot-prefixed so a half-written file is hidden from globbing tools; pid + random so concurrent writers
  // (two CLI runs on the same output) never share a temporary file.
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}

/** Create the directory that will hold `path`, and its parents, if missing. */
export async function ensureParentDir(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
}

/**
 * Check up front that `path` is a readable regular file, so the user gets "input image 'x.png' does not exist"
 * rather than an ENOENT stack trace from deep inside a decoder. `what` names the role of the file in the message.
 */
export async function assertReadableFile(path: string, what: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`${what} '${path}' does not exist`);
    throw new UserError(`${what} '${path}' cannot be read (${code ?? String(error)})`, { cause: error });
  }
  if (info.isDirectory()) throw new UserError(`${what} '${path}' is a directory, not a file`);
  if (!info.isFile()) throw new UserError(`${what} '${path}' is not a regular file`);
  try {
    await access(path, constants.R_OK);
  } catch (error) {
    throw new UserError(`${what} '${path}' is not readable (permission denied)`, { cause: error });
  }
}
