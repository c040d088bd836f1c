import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { buildClipTokenizerJson, ClipTokenizer } from '../../src/models/tokenizer.js';
import { ModelError } from '../../src/util/errors.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');
const SD1_DIR = join(FIXTURES, 'emojiworld');
const SD2_DIR = join(FIXTURES, 'emojiworld-sd2');

const vocab = JSON.parse(readFileSync(join(SD1_DIR, 'vocab.json'), 'utf8')) as Record<string, number>;
const merges = readFileSync(join(SD1_DIR, 'merges.txt'), 'utf8').split('\n');

const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** A copy of a fixture folder with some files replaced (`null` removes the file). */
function variant(base: string, files: Record<string, string | object | null>): string {
  const dir = mkdtempSync(join(tmpdir(), 'editkit-tok-'));
  temps.push(dir);
  cpSync(base, dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    if (content === null) rmSync(path, { force: true });
    else writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

// Strings for path-agreement checks: the fixture generator's kinds of trouble plus plain captions.
const AGREEMENT_TEXTS = [
  '',
  'a photo of a cat',
  'A PHOTO OF A CAT',
  'Hello, World!',
  'wow!!! really?!',
  "the cat's toy; it's here, isn't it? they'll go, I'm sure",
  'numbers 2024 3.14 1,000,000',
  'Café crème brûlée Cafe\u0301',
  'naïve résumé ÀÉÎÕÜ İstanbul',
  'straße STRASSE ﬁne ＡＢＣ１２３',
  '🐱🍎 emoji 👩‍🔬 ❤️',
  '一只猫在草地上 猫cat犬dog',
  'ひらがな カタカナ 안녕하세요 नमस्ते مرحبا',
  '  extra   spaces\t\ttabs\nnewlines\r\n  ',
  'non\u00a0breaking\u2003em\u3000ideographic line\u2028sep',
  'zero\u200bwidth\u200djoiner',
  'control\x00\x07\x1bchars\x7f',
  '&amp; &lt;b&gt; <b>tags</b>',
  'email@example.com https://example.com/path?q=1&r=2 #hashtag @mention $100.00 50% C++',
  'snake_case kebab-case CamelCase',
  '<|startoftext|>a cat<|endoftext|> a cat <|endoftext|> a dog',
  '<|ENDOFTEXT|> shouted !<|ENDOFTEXT|>',
  'a'.repeat(40),
  'supercalifragilisticexpialidocious',
  Array.from({ length: 12 }, () => 'a photo of a cat and an apple on the grass').join(' '),
];

describe('fromDirectory', () => {
  it('loads an SD 1.x folder: pad = <|endoftext|>', async () => {
    const tok = await ClipTokenizer.fromDirectory(SD1_DIR);
    expect(tok.backendKind).toBe('vocab-merges');
    expect(tok.padToken).toBe('<|endoftext|>');
    expect(tok.padTokenId).toBe(813);
    expect(tok.modelMaxLength).toBe(77);
  });

  it('loads the SD 2.x hub layout: special_tokens_map.json overrides a legacy config, pad = "!"', async () => {
    const config = readJson(join(SD2_DIR, 'tokenizer_config.json'));
    expect(config.pad_token).toBe('<|endoftext|>');
    expect('added_tokens_decoder' in config).toBe(false);
    const tok = await ClipTokenizer.fromDirectory(SD2_DIR);
    expect(tok.padToken).toBe('!');
    expect(tok.padTokenId).toBe(0);
    // diffusers issue #4153: "! !! !!!" tokenizes to six pad ids.
    expect(Array.from(tok.batchEncode(['! !! !!!']).inputIds.slice(0, 10))).toEqual([
      812, 0, 0, 0, 0, 0, 0, 813, 0, 0,
    ]);
  });

  it('ignores special_tokens_map.json when tokenizer_config.json has added_tokens_decoder', async () => {
    const dir = variant(SD1_DIR, { 'special_tokens_map.json': { pad_token: '!' } });
    expect((await ClipTokenizer.fromDirectory(dir)).padToken).toBe('<|endoftext|>');
  });

  it('reads pad "!" from a transformers ≥ 4.34 config', async () => {
    const config = readJson(join(SD1_DIR, 'tokenizer_config.json'));
    const decoder = config.added_tokens_decoder as Record<string, unknown>;
    const dir = variant(SD1_DIR, {
      'tokenizer_config.json': {
        ...config,
        pad_token: '!',
        added_tokens_decoder: {
          '0': {
            content: '!',
            lstrip: false,
            normalized: false,
            rstrip: false,
            single_word: false,
            special: true,
          },
          ...decoder,
        },
      },
    });
    const tok = await ClipTokenizer.fromDirectory(dir);
    expect(tok.padTokenId).toBe(0);
    expect(tok.tokenize('?!')).toEqual(['?</w>', '!']);
  });

  it('works without tokenizer_config.json and special_tokens_map.json (CLIPTokenizer defaults)', async () => {
    const dir = variant(SD1_DIR, { 'tokenizer_config.json': null, 'special_tokens_map.json': null });
    const tok = await ClipTokenizer.fromDirectory(dir);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.modelMaxLength]).toEqual([812, 813, 813, 77]);
  });

  it('reads legacy added_tokens.json and treats "no limit" model_max_length as 77', async () => {
    const config = readJson(join(SD2_DIR, 'tokenizer_config.json'));
    const dir = variant(SD2_DIR, {
      'added_tokens.json': { '<cat-toy>': 814 },
      'tokenizer_config.json': { ...config, model_max_length: 1e30 },
    });
    const tok = await ClipTokenizer.fromDirectory(dir);
    expect(tok.modelMaxLength).toBe(77);
    expect(tok.encode('a <cat-toy> toy')).toEqual([320, 814, ...tok.encode('toy')]);
    expect(tok.size).toBe(815);
    // Non-special added tokens decode verbatim, between spaces.
    expect(tok.decode(tok.encode('a <cat-toy> toy'))).toBe('a <cat-toy> toy');
  });
});

describe('fromDirectory errors', () => {
  const expectModelError = async (dir: string, pattern: RegExp) => {
    const error = await ClipTokenizer.fromDirectory(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelError);
    expect((error as Error).message).toMatch(pattern);
  };

  it('names the missing folder or file and what was expected', async () => {
    await expectModelError(join(FIXTURES, 'nope'), /tokenizer folder '.*nope' does not exist/);
    await expectModelError(
      variant(SD1_DIR, { 'vocab.json': null }),
      /'.*vocab\.json' is missing \(the BPE vocabulary/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'merges.txt': null }),
      /'.*merges\.txt' is missing \(the BPE merges/,
    );
    const error = await ClipTokenizer.fromDirectory(SD1_DIR, { backend: 'tokenizer-json' }).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toMatch(/'.*tokenizer\.json' is missing/);
  });

  it('names malformed files and what they should hold', async () => {
    await expectModelError(variant(SD1_DIR, { 'vocab.json': '{"a": 1,' }), /vocab\.json' is not valid JSON/);
    await expectModelError(
      variant(SD1_DIR, { 'vocab.json': '[1, 2]' }),
      /vocab\.json' must hold a JSON object/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'vocab.json': '{"a": "one"}' }),
      /id of token "a" must be a non-negative integer/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'merges.txt': 'i n\nt h\n' }),
      /merges\.txt': the first line must be the '#version/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'merges.txt': '#version: 0.2\ni n\nthe\n' }),
      /merges\.txt' line 3: expected two/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'tokenizer_config.json': '{"model_max_length": "77"}' }),
      /model_max_length must be an integer/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'tokenizer_config.json': '{"pad_token": 5}', 'special_tokens_map.json': null }),
      /pad_token must be a string or/,
    );
    // Only read when the config has no added_tokens_decoder, as in transformers.
    await expectModelError(
      variant(SD2_DIR, { 'special_tokens_map.json': 'nope' }),
      /special_tokens_map\.json' is not valid JSON/,
    );
    await expectModelError(
      variant(SD2_DIR, { 'added_tokens.json': '{"<x>": -1}' }),
      /id of '<x>' must be a non-negative integer/,
    );
    await expectModelError(
      variant(SD1_DIR, { 'tokenizer_config.json': '{"added_tokens_decoder": {"5": {"text": "x"}}}' }),
      /added_tokens_decoder\.5 must be \{"content": string/,
    );
  });

  it('rejects a tokenizer.json that is not a CLIP BPE', async () => {
    const json = buildClipTokenizerJson(vocab, merges);
    const gpt2Like = { ...json, model: { ...json.model, end_of_word_suffix: '' } };
    await expectModelError(variant(SD1_DIR, { 'tokenizer.json': gpt2Like }), /end_of_word_suffix "<\/w>"/);
    await expectModelError(
      variant(SD1_DIR, { 'tokenizer.json': { model: { type: 'WordPiece' } } }),
      /expected a BPE model/,
    );
  });
});

describe('tokenizer.json (via @huggingface/tokenizers)', () => {
  const withJson = (base: string, padToken?: string) =>
    variant(base, { 'tokenizer.json': buildClipTokenizerJson(vocab, merges, padToken ? { padToken } : {}) });

  it('is chosen automatically and gives the same ids as vocab.json + merges.txt (slow flavor)', async () => {
    const dir = withJson(SD1_DIR);
    const viaJson = await ClipTokenizer.fromDirectory(dir);
    const viaFiles = await ClipTokenizer.fromDirectory(dir, { backend: 'vocab-merges' });
    expect(viaJson.backendKind).toBe('tokenizer-json');
    expect(viaFiles.backendKind).toBe('vocab-merges');
    for (const text of AGREEMENT_TEXTS) {
      expect(viaJson.encode(text), text).toEqual(viaFiles.encode(text));
      expect(viaJson.tokenize(text), text).toEqual(viaFiles.tokenize(text));
    }
    const batch = (t: ClipTokenizer) => t.batchEncode(AGREEMENT_TEXTS);
    expect(batch(viaJson)).toEqual(batch(viaFiles));
    expect(viaJson.decode(viaJson.encode('🐱 a cat'))).toBe('🐱 a cat');
  });

  it('agrees for the SD 2.x layout too (pad "!")', async () => {
    const viaJson = await ClipTokenizer.fromDirectory(withJson(SD2_DIR, '!'));
    const viaFiles = await ClipTokenizer.fromDirectory(SD2_DIR);
    expect(viaJson.padTokenId).toBe(0);
    for (const text of AGREEMENT_TEXTS) expect(viaJson.encode(text), text).toEqual(viaFiles.encode(text));
  });

  it('fast flavor: tokenizers.js and our fast pipeline agree', async () => {
    // Where tokenizers.js itself differs from Rust tokenizers (String#toLowerCase's final-sigma rule, JS \s
    // including U+FEFF and not U+0085) our pipeline follows Rust; these texts avoid those characters.
    for (const [base, pad] of [
      [SD1_DIR, undefined],
      [SD2_DIR, '!'],
    ] as const) {
      const viaJson = await ClipTokenizer.fromDirectory(withJson(base, pad), { flavor: 'fast' });
      const viaFiles = await ClipTokenizer.fromDirectory(base, { flavor: 'fast' });
      for (const text of AGREEMENT_TEXTS) {
        expect(viaJson.encode(text), text).toEqual(viaFiles.encode(text));
        expect(viaJson.tokenize(text), text).toEqual(viaFiles.tokenize(text));
      }
    }
  });

  it('fast flavor gives tokenizers.js the config’s special tokens that tokenizer.json lacks', async () => {
    // SD 2.x folder whose tokenizer.json was written without "!" among its added tokens.
    const dir = withJson(SD2_DIR);
    const tok = await ClipTokenizer.fromDirectory(dir, { flavor: 'fast' });
    expect(tok.padTokenId).toBe(0);
    expect(tok.tokenize('?!')).toEqual(['?</w>', '!']);
  });

  it('fast and slow flavors differ where transformers’ two tokenizers do', async () => {
    const slow = await ClipTokenizer.fromDirectory(SD1_DIR);
    const fast = await ClipTokenizer.fromDirectory(SD1_DIR, { flavor: 'fast' });
    expect(slow.encode('a photo of a cat')).toEqual(fast.encode('a photo of a cat'));
    // CJK ideographs: spaced out (one word each) by the slow clean-up, one word for the fast normaliser.
    expect(slow.tokenize('猫猫')).toEqual(['ç', 'Į', '«</w>', 'ç', 'Į', '«</w>']);
    expect(fast.tokenize('猫猫')).toEqual(['ç', 'Į', '«', 'ç', 'Į', '«</w>']);
    // Zero-width characters: dropped by the slow clean-up, kept (as punctuation) by the fast one.
    expect(slow.encode('a\u200bb')).toEqual(slow.encode('ab'));
    expect(fast.encode('a\u200bb')).toHaveLength(5);
  });
});
