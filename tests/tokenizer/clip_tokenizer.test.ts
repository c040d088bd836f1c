import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  bytesToUnicode,
  ClipTokenizer,
  clipBasicClean,
  clipFastNormalize,
  TRANSFORMERS_MAX_MERGES,
} from '../../src/models/tokenizer.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');
const SD1_DIR = join(FIXTURES, 'emojiworld');

function fixtureVocab(): { vocab: Record<string, number>; merges: string[] } {
  return {
    vocab: JSON.parse(readFileSync(join(SD1_DIR, 'vocab.json'), 'utf8')) as Record<string, number>,
    merges: readFileSync(join(SD1_DIR, 'merges.txt'), 'utf8').split('\n'),
  };
}

/** Deterministic text soup over scripts, emoji, digits, punctuation and whitespace. */
function randomTexts(count: number, seed: number): string[] {
  const pool = [
    ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    ...' ,.!?\'"-_:;()[]{}<>/\\@#$%^&*+=~`|',
    ...'éèüößçñÅØ',
    ...'猫犬草地ひらがなカタカナ한국어',
    ...'αβγΣπ',
    '🐱',
    '🍎',
    '❤️',
    '\u00a0',
    '\t',
    '\n',
  ];
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = Math.floor(next() * 40);
    let text = '';
    for (let j = 0; j < length; j++) text += pool[Math.floor(next() * pool.length)];
    out.push(text);
  }
  return out;
}

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.fromDirectory(SD1_DIR);
});

describe('bytes_to_unicode', () => {
  it('is a bijection onto 256 visible, non-whitespace characters', () => {
    const table = bytesToUnicode();
    expect(table).toHaveLength(256);
    expect(new Set(table).size).toBe(256);
    for (const ch of table) expect(ch).not.toMatch(/[\s\p{C}]/u);
    // Printable Latin-1 bytes stand for themselves; the others move to U+0100.., in byte order.
    expect(table[0x21]).toBe('!');
    expect(table[0xe9]).toBe('é');
    expect(table[0x00]).toBe('\u0100');
    expect(table[0x20]).toBe('\u0120'); // space → Ġ, as in GPT-2
    expect(table[0xad]).toBe('\u0143');
  });
});

describe('text clean-up', () => {
  it('slow: drops control/format characters, spaces CJK ideographs, NFC, lower-cases per word', () => {
    expect(clipBasicClean('  Hello\tWORLD\n ')).toBe('hello world');
    expect(clipBasicClean('a\u0000b\u0007c\u200bd\u200de\ufefff')).toBe('abcdef');
    expect(clipBasicClean('non\u00a0breaking\u3000space')).toBe('non breaking space');
    expect(clipBasicClean('一只猫cat')).toBe('一 只 猫 cat');
    expect(clipBasicClean('ひらがな한국어')).toBe('ひらがな한국어'); // kana and hangul are not CJK ideographs
    expect(clipBasicClean('Cafe\u0301')).toBe('café');
    expect(clipBasicClean('line\u2028break\u2029para')).toBe('line break para');
    // Python's str.lower() applies the final-sigma rule within a word.
    expect(clipBasicClean('ΟΔΟΣ ΣΟΦΟΣ')).toBe('οδος σοφος');
  });

  it('fast: NFC, White_Space → " ", per-character lowercase, nothing removed', () => {
    expect(clipFastNormalize('  Hello\tWORLD\n ')).toBe(' hello world ');
    expect(clipFastNormalize('a\u200bb')).toBe('a\u200bb');
    expect(clipFastNormalize('Cafe\u0301')).toBe('café');
    expect(clipFastNormalize('a\u0085b')).toBe('a b'); // NEL is White_Space for Oniguruma, not for JS \s
    expect(clipFastNormalize('ΟΔΟΣ')).toBe('οδοσ'); // Rust lowercases char by char: no final sigma
  });
});

describe('BPE', () => {
  it('puts </w> on the last symbol of each word only', () => {
    expect(tok.tokenize('a')).toEqual(['a</w>']);
    expect(tok.tokenize('a photo of a cat')).toEqual(['a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>']);
    expect(tok.tokenize('wow')).toEqual(['w', 'o', 'w</w>']);
    for (const text of randomTexts(200, 1)) {
      for (const token of tok.tokenize(text)) {
        const inner = token.endsWith('</w>') ? token.slice(0, -4) : token;
        expect(inner).not.toContain('</w>');
      }
    }
  });

  it('applies merges by rank, not by position', () => {
    // c a t</w>: (c,a) has rank 107 but (a,t</w>) has rank 9, so "at</w>" forms first and "ca" never does.
    expect(tok.tokenize('cat')).toEqual(['cat</w>']);
    // (c,a) applies when nothing better competes.
    expect(tok.tokenize('café')).toEqual(['ca', 'f', 'Ã', '©</w>']);
  });

  it('round-trips arbitrary text through bytes (decode(encode(x)) = cleaned words joined by spaces)', () => {
    const split =
      /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;
    for (const text of randomTexts(300, 2)) {
      const words = clipBasicClean(text).match(split) ?? [];
      const ids = tok.encode(text);
      expect(tok.decode(ids, { cleanUpTokenizationSpaces: false })).toBe(words.join(' '));
      // Every byte has a symbol, so nothing is ever unknown (unk is <|endoftext|> here).
      if (!text.includes('<|')) expect(ids).not.toContain(tok.unkTokenId);
    }
  });

  it('caps merges at transformers’ 48 894 for vocabularies up to OpenAI’s size, not beyond', () => {
    const { vocab } = fixtureVocab();
    // 48 894 merges of symbols that never occur, then one that would matter.
    const filler = Array.from({ length: TRANSFORMERS_MAX_MERGES }, (_, i) => `Ā${i} Ā${i}`);
    const merges = ['#version: 0.2', ...filler, 'a t</w>'];
    const small = { ...vocab, 'at</w>': 900 };
    expect(ClipTokenizer.fromVocabAndMerges(small, merges).tokenize('at')).toEqual(['a', 't</w>']);
    const big: Record<string, number> = { ...small };
    for (let i = 0; i < 49408; i++) big[`filler${i}`] = 1000 + i;
    expect(ClipTokenizer.fromVocabAndMerges(big, merges).tokenize('at')).toEqual(['at</w>']);
    expect(ClipTokenizer.fromVocabAndMerges(small, merges, { maxMerges: Infinity }).tokenize('at')).toEqual([
      'at</w>',
    ]);
  });

  it('accepts merges with or without the #version header', () => {
    const { vocab, merges } = fixtureVocab();
    const withHeader = ClipTokenizer.fromVocabAndMerges(vocab, merges);
    const without = ClipTokenizer.fromVocabAndMerges(vocab, merges.slice(1));
    for (const text of randomTexts(50, 3)) expect(without.encode(text)).toEqual(withHeader.encode(text));
  });
});

describe('split pattern', () => {
  it('splits contractions, single digits and punctuation runs', () => {
    const words = (text: string) =>
      tok.decode(tok.encode(text), { cleanUpTokenizationSpaces: false }).split(' ');
    expect(words("it's")).toEqual(['it', "'s"]);
    expect(words("IT'S")).toEqual(['it', "'s"]);
    expect(words("we'll they'd I'm you're we've isn't")).toEqual([
      'we',
      "'ll",
      'they',
      "'d",
      'i',
      "'m",
      'you',
      "'re",
      'we',
      "'ve",
      'isn',
      "'t",
    ]);
    expect(words("'sup")).toEqual(["'s", 'up']);
    expect(words('2024')).toEqual(['2', '0', '2', '4']);
    expect(words('3.14')).toEqual(['3', '.', '1', '4']);
    expect(words('wow!!! ?!')).toEqual(['wow', '!!!', '?!']);
    expect(words("!'s")).toEqual(["!'", 's']); // the punctuation run is greedy and eats the apostrophe
    expect(words('email@example.com')).toEqual(['email', '@', 'example', '.', 'com']);
    expect(words('snake_case')).toEqual(['snake', '_', 'case']);
  });

  it('matches contractions case-insensitively in the slow flavor only (IGNORECASE folds ſ to s)', () => {
    const { vocab, merges } = fixtureVocab();
    const fast = ClipTokenizer.fromVocabAndMerges(vocab, merges, { flavor: 'fast' });
    expect(tok.decode(tok.encode("it'ſ"), { cleanUpTokenizationSpaces: false })).toBe("it 'ſ");
    expect(fast.decode(fast.encode("it'ſ"))).toBe("it ' ſ");
  });
});

describe('special tokens', () => {
  it('has CLIP’s BOS/EOS/pad ids and sizes', () => {
    expect(tok.bosToken).toBe('<|startoftext|>');
    expect(tok.eosToken).toBe('<|endoftext|>');
    expect(tok.bosTokenId).toBe(812);
    expect(tok.eosTokenId).toBe(813);
    expect(tok.padTokenId).toBe(813);
    expect(tok.unkTokenId).toBe(813);
    expect(tok.vocabSize).toBe(814);
    expect(tok.size).toBe(814);
    expect(tok.modelMaxLength).toBe(77);
  });

  it('recognises special tokens in the text', () => {
    expect(tok.encode('<|startoftext|>a cat<|endoftext|>')).toEqual([812, 320, 536, 813]);
    expect(tok.encode('a cat <|endoftext|> a dog')).toEqual([320, 536, 813, 320, 562]);
    // Not the added token (case-sensitive), but lower-cased it matches the pattern's special alternatives.
    expect(tok.encode('<|ENDOFTEXT|>')).toEqual([813]);
    // ...unless a punctuation run has already swallowed the "<|".
    expect(tok.tokenize('!<|ENDOFTEXT|>')).not.toContain('<|endoftext|>');
  });

  it('maps symbols missing from the vocabulary to the unknown token', () => {
    const { vocab, merges } = fixtureVocab();
    const partial = { ...vocab };
    delete partial['x</w>'];
    const t = ClipTokenizer.fromVocabAndMerges(partial, merges);
    expect(t.encode('a x')).toEqual([320, t.unkTokenId]);
    const customUnk = ClipTokenizer.fromVocabAndMerges(partial, merges, { unkToken: '!' });
    expect(customUnk.encode('x')).toEqual([0]);
  });

  it('adds special tokens missing from the vocabulary after it', () => {
    const { vocab, merges } = fixtureVocab();
    expect(ClipTokenizer.fromVocabAndMerges(vocab, merges, { unkToken: '<unk>' }).unkTokenId).toBe(814);
    const noEos = { ...vocab };
    delete noEos['<|endoftext|>'];
    // The special token is then added with id len(vocab), as transformers' _add_tokens does.
    const t = ClipTokenizer.fromVocabAndMerges(noEos, merges);
    expect(t.eosTokenId).toBe(813);
    expect(t.size).toBe(814);
  });
});

describe('batchEncode', () => {
  it('pads to 77 with BOS … EOS and an attention mask', () => {
    const { inputIds, attentionMask, shape, truncated } = tok.batchEncode(['a photo of a cat', '']);
    expect(shape).toEqual([2, 77]);
    expect(inputIds).toBeInstanceOf(Int32Array);
    const row0 = Array.from(inputIds.slice(0, 77));
    expect(row0.slice(0, 7)).toEqual([812, 320, 538, 522, 320, 536, 813]);
    expect(row0.slice(7)).toEqual(new Array(70).fill(813));
    expect(Array.from(attentionMask.slice(0, 77))).toEqual([
      ...new Array(7).fill(1),
      ...new Array(70).fill(0),
    ]);
    const row1 = Array.from(inputIds.slice(77));
    expect(row1.slice(0, 2)).toEqual([812, 813]);
    expect(Array.from(attentionMask.slice(77)).reduce((a, b) => a + b)).toBe(2);
    expect(truncated).toEqual([false, false]);
  });

  it('truncates content to 75 tokens and still ends with EOS', () => {
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    const { inputIds, attentionMask, truncated } = tok.batchEncode([long]);
    expect(inputIds[0]).toBe(812);
    expect(Array.from(inputIds.slice(1, 76))).toEqual(new Array(75).fill(536));
    expect(inputIds[76]).toBe(813);
    expect(Array.from(attentionMask)).toEqual(new Array(77).fill(1));
    expect(truncated).toEqual([true]);
  });

  it('keeps exactly 75 content tokens untruncated and cuts 76', () => {
    const words = (n: number) => Array.from({ length: n }, () => 'cat').join(' ');
    expect(tok.batchEncode([words(75)]).truncated).toEqual([false]);
    const cut = tok.batchEncode([words(76)]);
    expect(cut.truncated).toEqual([true]);
    expect(cut.inputIds[76]).toBe(813);
  });

  it('supports other lengths and padding to the longest row', () => {
    const short = tok.batchEncode(['a cat'], { maxLength: 4 });
    expect(short.shape).toEqual([1, 4]);
    expect(Array.from(short.inputIds)).toEqual([812, 320, 536, 813]);
    const cut = tok.batchEncode(['a cat'], { maxLength: 3 });
    expect(Array.from(cut.inputIds)).toEqual([812, 320, 813]);
    const longest = tok.batchEncode(['a cat', 'a'], { padding: 'longest' });
    expect(longest.shape).toEqual([2, 4]);
    expect(Array.from(longest.inputIds)).toEqual([812, 320, 536, 813, 812, 320, 813, 813]);
    expect(Array.from(longest.attentionMask)).toEqual([1, 1, 1, 1, 1, 1, 1, 0]);
    expect(tok.batchEncode([]).shape).toEqual([0, 77]);
    expect(() => tok.batchEncode(['a'], { maxLength: 1 })).toThrow(/maxLength must be an integer ≥ 2/);
  });

  it('pads with "!" (id 0) when that is the pad token, as SD 2.x does', () => {
    const { vocab, merges } = fixtureVocab();
    const sd2 = ClipTokenizer.fromVocabAndMerges(vocab, merges, { padToken: '!' });
    expect(sd2.padTokenId).toBe(0);
    const { inputIds, attentionMask } = sd2.batchEncode(['a cat']);
    expect(Array.from(inputIds.slice(0, 6))).toEqual([812, 320, 536, 813, 0, 0]);
    expect(Array.from(attentionMask.slice(0, 6))).toEqual([1, 1, 1, 1, 0, 0]);
    // The pad token is an added special token, so a "!" in the prompt is split out before BPE.
    expect(sd2.tokenize('wow!!!')).toEqual(['w', 'o', 'w</w>', '!', '!', '!']);
    expect(tok.tokenize('wow!!!')).toEqual(['w', 'o', 'w</w>', '!', '!', '!</w>']);
  });
});

describe('decode', () => {
  it('reads </w> as a space and keeps special tokens unless asked', () => {
    const ids = Array.from(tok.batchEncode(['A photo of a CAT'], { maxLength: 9 }).inputIds);
    expect(tok.decode(ids)).toBe('<|startoftext|>a photo of a cat <|endoftext|><|endoftext|><|endoftext|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('a photo of a cat');
  });

  it('cleans up tokenization spaces on request (default from tokenizer_config.json)', () => {
    const ids = tok.encode("hello, world. it's fine!");
    expect(tok.decode(ids, { cleanUpTokenizationSpaces: false })).toBe("hello , world . it 's fine !");
    expect(tok.decode(ids, { cleanUpTokenizationSpaces: true })).toBe("hello, world. it's fine!");
    // The fixture config says clean_up_tokenization_spaces: true, as transformers writes it.
    expect(tok.decode(ids)).toBe("hello, world. it's fine!");
  });

  it('decodes multi-byte characters split over tokens and replaces broken UTF-8', () => {
    expect(tok.decode(tok.encode('🐱 猫 café'))).toBe('🐱 猫 café');
    const catTokens = tok.encode('🐱');
    expect(tok.decode(catTokens.slice(0, 1))).toBe('\ufffd');
  });

  it('throws on ids outside the vocabulary', () => {
    expect(() => tok.decode([320, 99999])).toThrow(RangeError);
  });
});
