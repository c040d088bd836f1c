import { Writable } from 'node:stream';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { createProgress, shouldShowProgress } from '../../src/cli/progress.js';

class Capture extends Writable {
  chunks: string[] = [];
  isTTY: boolean;
  columns = 120;
  constructor(isTTY: boolean) {
    super();
    this.isTTY = isTTY;
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk.toString());
    done();
  }
  get text(): string {
    return this.chunks.join('');
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('createProgress', () => {
  it('draws stage, count and ETA on the given stream, and nothing on stdout', () => {
    const stdout = vi.spyOn(process.stdout, 'write');
    const stream = new Capture(true);
    const progress = createProgress({ enabled: true, label: 'diffedit', stream });
    progress.stage('invert', 2);
    progress.tick();
    progress.tick();
    progress.stage('denoise', 3);
    progress.tick(3);
    progress.stop();
    progress.stop();
    progress.tick(); // after stop: ignored
    expect(stream.text).toContain('diffedit │ invert');
    expect(stream.text).toContain('2/2');
    expect(stream.text).toContain('denoise');
    expect(stream.text).toContain('3/3');
    expect(stream.text).toMatch(/ETA (--|\d)/);
    expect(stdout).not.toHaveBeenCalled();
  });

  it('shows no ETA before the first step', () => {
    const stream = new Capture(true);
    const progress = createProgress({ enabled: true, label: 'x', stream });
    progress.stage('load', 5);
    progress.stop();
    expect(stream.text).toContain('0/5 │ ETA --');
  });

  it('is silent when disabled or when the stream is not a terminal', () => {
    for (const [enabled, tty] of [
      [false, true],
      [true, false],
    ]) {
      const stream = new Capture(tty);
      const progress = createProgress({ enabled, label: 'x', stream });
      progress.stage('denoise', 2);
      progress.tick();
      progress.stop();
      expect(stream.text).toBe('');
    }
  });
});

describe('shouldShowProgress', () => {
  it('needs a terminal and no --json', () => {
    expect(shouldShowProgress(false, { isTTY: true })).toBe(true);
    expect(shouldShowProgress(true, { isTTY: true })).toBe(false);
    expect(shouldShowProgress(false, { isTTY: false })).toBe(false);
    expect(shouldShowProgress(false, {})).toBe(false);
  });
});
