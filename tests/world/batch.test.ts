import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  BATCH_FORMAT,
  writeBatch,
  type BatchOptions,
  type BatchRecordHeader,
} from '../../src/world/batch.js';
import { renderScene } from '../../src/world/render.js';
import { sampleScene } from '../../src/world/scene.js';
import { splitSeed } from '../../src/world/splits.js';

async function collect(options: BatchOptions): Promise<Buffer> {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const result = await writeBatch(options, stream);
  stream.end();
  const bytes = Buffer.concat(chunks);
  expect(result.bytes).toBe(bytes.length);
  return bytes;
}

/** The reader the README documents, in TypeScript: a JSON line, then `nbytes` of arrays. */
function parse(bytes: Buffer): {
  stream: Record<string, unknown>;
  records: { header: BatchRecordHeader; arrays: Record<string, Uint8Array> }[];
} {
  let at = 0;
  const line = (): string => {
    const end = bytes.indexOf(0x0a, at);
    const text = bytes.subarray(at, end).toString('utf8');
    at = end + 1;
    return text;
  };
  const stream = JSON.parse(line()) as Record<string, unknown>;
  const records = [];
  while (at < bytes.length) {
    const header = JSON.parse(line()) as BatchRecordHeader;
    const arrays: Record<string, Uint8Array> = {};
    let offset = at;
    for (const a of header.arrays) {
      const n = a.shape.reduce((x, y) => x * y, 1);
      arrays[a.name] = bytes.subarray(offset, offset + n);
      offset += n;
    }
    expect(offset - at).toBe(header.nbytes);
    at += header.nbytes;
    records.push({ header, arrays });
  }
  return { stream, records };
}

describe('batch stream', () => {
  it('carries rendered scenes, captions and masks', async () => {
    const bytes = await collect({ split: 'heldout', start: 5, count: 3, mode: 'scene' });
    const { stream, records } = parse(bytes);
    expect(stream).toMatchObject({
      type: 'header',
      format: BATCH_FORMAT,
      version: 1,
      mode: 'scene',
      split: 'heldout',
      count: 3,
    });
    expect(records).toHaveLength(3);
    for (const [k, { header, arrays }] of records.entries()) {
      if (header.type !== 'scene') throw new Error('expected scene records');
      expect(header.seed).toBe(splitSeed('heldout', 5 + k));
      expect(header.scene).toEqual(sampleScene(header.seed));
      const r = await renderScene(header.scene);
      expect(Buffer.from(arrays.image).equals(Buffer.from(r.image))).toBe(true);
      expect(Buffer.from(arrays.union).equals(Buffer.from(r.union))).toBe(true);
      expect(header.arrays.find((a) => a.name === 'objects')?.shape).toEqual([
        header.scene.objects.length,
        128,
        128,
      ]);
      expect(header.captions).toContain(header.caption);
      expect(header.facts.classes).toEqual(header.scene.objects.map((o) => o.class));
    }
    // Deterministic: the same options give the same bytes.
    expect(bytes.equals(await collect({ split: 'heldout', start: 5, count: 3, mode: 'scene' }))).toBe(true);
  });

  it('carries edit pairs with their masks', async () => {
    const { records } = parse(
      await collect({
        split: 'train',
        start: 0,
        count: 4,
        mode: 'edit',
        tasks: ['move', 'colour'],
        scene: { width: 64, height: 64 },
      }),
    );
    for (const { header, arrays } of records) {
      if (header.type !== 'edit') throw new Error('expected edit records');
      expect(['move', 'colour']).toContain(header.task);
      expect(arrays.source.length).toBe(64 * 64 * 3);
      expect(arrays.mask.length).toBe(64 * 64);
      expect(header.drag === null).toBe(header.task !== 'move');
      let outside = 0;
      for (let p = 0; p < 64 * 64; p++) {
        const changed = [0, 1, 2].some((c) => arrays.source[3 * p + c] !== arrays.target[3 * p + c]);
        if (changed && arrays.mask[p] === 0) outside++;
      }
      expect(outside).toBe(0);
    }
  });

  describe('Python reader', () => {
    const python = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'editkit-batch-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it.skipIf(!python)('reads and checks a stream (scripts/world/read_batch.py)', async () => {
      const file = join(dir, 'b.bin');
      await writeFile(file, await collect({ split: 'train', start: 10, count: 6, mode: 'edit' }));
      const out = execFileSync('python3', ['scripts/world/read_batch.py', file, '--check', '--show', '0'], {
        encoding: 'utf8',
      });
      expect(out.trim()).toBe('6 edit record(s) from the train split, 0 problem(s)');
    });
  });
});
