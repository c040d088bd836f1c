/**
 * The LMM scorer against a local HTTP stub that checks what the scorer sends (an OpenAI-compatible
 * chat-completions request with the instruction, the two images and the bearer key) and answers like a model.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LMM_CRITERIA, LmmScorer, parseLmmReply } from '../../src/eval/lmm.js';
import { UserError } from '../../src/util/errors.js';

interface Seen {
  path: string;
  auth: string | undefined;
  body: {
    model: string;
    temperature: number;
    messages: {
      role: string;
      content: ({ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } })[];
    }[];
  };
}

let server: Server;
let base = '';
const seen: Seen[] = [];
let reply =
  '{"editing_accuracy": 8, "contextual_preservation": 6, "visual_quality": 5, "logical_realism": 9}';
let status = 200;

async function read(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    seen.push({
      path: req.url ?? '',
      auth: req.headers.authorization,
      body: JSON.parse(await read(req)) as Seen['body'],
    });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(
      status === 200
        ? JSON.stringify({ choices: [{ message: { role: 'assistant', content: `Sure.\n${reply}` } }] })
        : '{"error":"nope"}',
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const png = (n: number) => Uint8Array.from([137, 80, 78, 71, n]);

describe('LmmScorer', () => {
  it('sends one chat-completions request with the instruction, both images and the key; weighs the four criteria', async () => {
    const scorer = new LmmScorer({ endpoint: `${base}/`, model: 'stub-vision', apiKey: 'k123' });
    const result = await scorer.score('replace the cat with a car', png(1), png(2));
    expect(seen).toHaveLength(1);
    const request = seen[0];
    expect(request.path).toBe('/v1/chat/completions');
    expect(request.auth).toBe('Bearer k123');
    expect(request.body.model).toBe('stub-vision');
    expect(request.body.temperature).toBe(0);
    const content = request.body.messages[0].content;
    const text = content.find((c) => c.type === 'text') as { text: string };
    expect(text.text).toContain('"replace the cat with a car"');
    for (const c of LMM_CRITERIA) expect(text.text).toContain(c.key);
    const images = content.filter((c) => c.type === 'image_url') as { image_url: { url: string } }[];
    expect(images.map((i) => i.image_url.url)).toEqual([
      `data:image/png;base64,${Buffer.from(png(1)).toString('base64')}`,
      `data:image/png;base64,${Buffer.from(png(2)).toString('base64')}`,
    ]);
    expect(result.criteria).toEqual({
      editing_accuracy: 8,
      contextual_preservation: 6,
      visual_quality: 5,
      logical_realism: 9,
    });
    expect(result.score).toBeCloseTo(0.4 * 8 + 0.3 * 6 + 0.2 * 5 + 0.1 * 9, 10);
    const custom = await new LmmScorer({ endpoint: base, model: 'm', weights: [1, 0, 0, 0] }).score(
      'x',
      png(1),
      png(2),
    );
    expect(custom.score).toBe(8);
    expect(seen[1].auth).toBeUndefined();
  });

  it('turns bad answers and bad settings into one-line errors', async () => {
    status = 500;
    await expect(new LmmScorer({ endpoint: base, model: 'm' }).score('x', png(1), png(2))).rejects.toThrow(
      /answered 500/,
    );
    status = 200;
    reply = '{"editing_accuracy": 11}';
    await expect(new LmmScorer({ endpoint: base, model: 'm' }).score('x', png(1), png(2))).rejects.toThrow(
      /not 1–10/,
    );
    await expect(
      new LmmScorer({ endpoint: 'http://127.0.0.1:9/v1', model: 'm', timeoutMs: 2000 }).score(
        'x',
        png(1),
        png(2),
      ),
    ).rejects.toThrow(UserError);
    expect(() => new LmmScorer({ endpoint: 'not a url', model: 'm' })).toThrow(/is not a URL/);
    expect(() => new LmmScorer({ endpoint: base, model: 'm', weights: [1, 2] })).toThrow(/needs 4/);
    expect(() => parseLmmReply('no json here')).toThrow(/no JSON object/);
  });
});

describe('eval with an LMM scorer', () => {
  it('puts the LMM score of each edit in the results', async () => {
    const { join } = await import('node:path');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { StableDiffusionBundle } = await import('../../src/models/bundle.js');
    const { ClipModel } = await import('../../src/models/clip.js');
    const { EmojiJudge } = await import('../../src/models/judge.js');
    const { PerceptualDistance } = await import('../../src/metrics/perceptual.js');
    const { evalMethods } = await import('../../src/eval/methods.js');
    const { runEval } = await import('../../src/eval/run.js');
    const { EMOJI_LDM, bundledWorldSubset } = await import('../support/bundled_model.js');
    reply =
      '{"editing_accuracy": 9, "contextual_preservation": 9, "visual_quality": 8, "logical_realism": 7}';
    const out = mkdtempSync(join(tmpdir(), 'editkit-lmm-eval-'));
    const bundle = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu' });
    const scorers = {
      judge: await EmojiJudge.load(join(EMOJI_LDM, '..', 'emoji-judge')),
      clip: await ClipModel.load(join(EMOJI_LDM, '..', 'emoji-clip')),
      perceptual: await PerceptualDistance.fromJudge(join(EMOJI_LDM, '..', 'emoji-judge')),
      lmm: new LmmScorer({ endpoint: base, model: 'stub-vision' }),
    };
    const before = seen.length;
    try {
      const methods = evalMethods({
        steps: 2,
        guidance: 5,
        strengths: [],
        ratios: [],
        dragLoraSteps: 0,
        dragSteps: 0,
      }).filter((m) => m.key === 'ground-truth');
      const results = await runEval(bundle, scorers, {
        tasks: ['replace'],
        cases: 2,
        methods,
        scene: { ...bundledWorldSubset().scene, width: 64, height: 64 },
        out,
        seed: 0,
        examples: 0,
        resume: false,
        versions: {},
      });
      expect(results.records.map((r) => r.scores.lmmScore)).toEqual(
        [8.6, 8.6].map((v) => expect.closeTo(v, 10)),
      );
      expect(seen.length - before).toBe(2);
      const text = (seen.at(-1)!.body.messages[0].content[0] as { text: string }).text;
      expect(text).toMatch(/The edit instruction was: "\w/);
    } finally {
      await bundle.release();
      await Promise.all([scorers.judge.release(), scorers.clip.release(), scorers.perceptual.release()]);
      rmSync(out, { recursive: true, force: true });
    }
  });
});
