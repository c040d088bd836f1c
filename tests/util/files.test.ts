import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ModelError, UserError } from '../../src/util/errors.js';
import { assertReadableFile, ensureParentDir, writeFileAtomic } from '../../src/util/files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'editkit-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('errors', () => {
  it('ModelError is a UserError with its own name', () => {
    const error = new ModelError("unet.onnx: expected input 'sample'");
    expect(error).toBeInstanceOf(UserError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ModelError');
    expect(new UserError('x').name).toBe('UserError');
  });
});

describe('writeFileAtomic', () => {
  it('writes bytes and strings, replaces an existing file, and leaves no temporary file', async () => {
    const path = join(dir, 'out.bin');
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect([...(await readFile(path))]).toEqual([1, 2, 3]);
    await writeFileAtomic(path, 'hello');
    expect(await readFile(path, 'utf8')).toBe('hello');
    expect(await readdir(dir)).toEqual(['out.bin']);
  });

  it('removes its temporary file and keeps nothing when the final rename fails', async () => {
    const target = join(dir, 'taken');
    await mkdir(target); // renaming a file over a directory fails
    await expect(writeFileAtomic(target, 'data')).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['taken']);
    expect(await readdir(target)).toEqual([]);
  });

  it('fails cleanly when the directory does not exist', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'out.txt'), 'x')).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('ensureParentDir', () => {
  it('creates missing parents and accepts existing ones', async () => {
    const path = join(dir, 'a', 'b', 'c.png');
    await ensureParentDir(path);
    await ensureParentDir(path);
    expect(await readdir(join(dir, 'a'))).toEqual(['b']);
  });
});

describe('assertReadableFile', () => {
  it('accepts a readable file', async () => {
    const path = join(dir, 'x.png');
    await writeFile(path, 'x');
    await expect(assertReadableFile(path, 'input image')).resolves.toBeUndefined();
  });

  it('names the role and the path of a missing file', async () => {
    const path = join(dir, 'x.png');
    await expect(assertReadableFile(path, 'input image')).rejects.toThrow(
      new UserError(`input image '${path}' does not exist`),
    );
    await expect(assertReadableFile(join(path, 'child'), 'mask')).rejects.toBeInstanceOf(UserError);
  });

  it('refuses a directory', async () => {
    await expect(assertReadableFile(dir, 'input image')).rejects.toThrow(/is a directory/);
  });
});
