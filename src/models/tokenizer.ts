/**
 * CLIP byte-level BPE tokenizer that reproduces the ids of Hugging Face transformers' `CLIPTokenizer`, the
 * tokenizer diffusers' Stable Diffusion pipelines call as
 * `tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)`.
 *
 * Two text "flavors", because transformers itself has two CLIP tokenizers:
 *
 * - `'slow'` (default): the Python `CLIPTokenizer` of transformers 4.x as it runs when the optional `ftfy`
 *   package is absent. It cleans text with `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`:
 *   drop NUL/U+FFFD/control and format characters (Unicode category C*, so also zero-width joiners and BOMs),
 *   turn whitespace into spaces, put spaces around CJK ideographs, NFC-normalise, split on whitespace,
 *   lower-case each word and join with single spaces. We implement this and not the ftfy path on purpose:
 *   it is the default (ftfy is not a dependency of transformers or diffusers) and it is fully specified, whereas
 *   `whitespace_clean(ftfy.fix_text(text)).lower()` depends on the ftfy version's heuristics. With ftfy installed
 *   transformers gives different ids for, e.g., curly quotes ("it’s" becomes "it's"), HTML entities ("&amp;"),
 *   ligatures and full-width forms (NFKC-like fixes), mojibake, and does not space out CJK ideographs or drop
 *   format characters.
 * - `'fast'`: `CLIPTokenizerFast`, which is also what `CLIPTokenizer` is in transformers 5 (the Python one was
 *   removed there): the `tokenizers` normaliser NFC → collapse White_Space runs to " " → lowercase each character
 *   (Rust's `char::to_lowercase`: no final-sigma rule), no control-character removal, no CJK spacing.
 *
 * After clean-up both split with CLIP's pattern, map UTF-8 bytes to the printable `bytes_to_unicode` alphabet,
 * and run BPE with `</w>` appended to a word's last symbol, merging the lowest-ranked pair (rank = line order in
 * merges.txt) everywhere until no ranked pair is left.
 *
 * Files: a diffusers `tokenizer/` folder (vocab.json + merges.txt + tokenizer_config.json +
 * special_tokens_map.json), or a `tokenizer.json`, which is loaded with `@huggingface/tokenizers`. Either way
 * the text handling, special tokens, truncation and padding are ours, so the output contract is the same.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { ModelError } from '../util/errors.js';

export const CLIP_BOS_TOKEN = '<|startoftext|>';
export const CLIP_EOS_TOKEN = '<|endoftext|>';
const END_OF_WORD = '</w>';
const DEFAULT_MODEL_MAX_LENGTH = 77;

/** Size of OpenAI CLIP's vocabulary: 256 bytes + 256 bytes with `</w>` + 48 894 merges + 2 specials. */
export const OPENAI_CLIP_VOCAB_SIZE = 49408;
/**
 * transformers reads `merges.txt` as `lines[1 : 49152 - 256 - 2 + 1]` (a constant copied from OpenAI's
 * simple_tokenizer, whose bpe file has far more lines than the model uses), i.e. never more than 48 894 merges
 * whatever the vocabulary size.
 */
export const TRANSFORMERS_MAX_MERGES = 49152 - 256 - 2;

/**
 * transformers' PreTrainedTokenizerBase uses int(1e30) for "no limit"; such a config means the value was never
 * set, and padding a prompt to 1e30 tokens is not what anyone wants, so it falls back to CLIP's 77.
 */
const UNSET_MODEL_MAX_LENGTH = 1e29;

/** Python's `bytes_to_unicode()`: index = byte value, value = the printable stand-in character. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  }
  return table;
}

// The package's own .d.ts files use extension-less relative imports, which NodeNext resolution cannot follow, so
// the parts we use beyond `Tokenizer` itself are typed here (and checked at run time where it matters).
interface HfBpeModel {
  bpe(word: string): string[];
}
interface HfEncoding {
  ids: number[];
  tokens: string[];
}

const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((ch, b) => [ch, b]));
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function byteEncode(piece: string): string {
  let out = '';
  for (const b of utf8Encoder.encode(piece)) out += BYTE_TO_CHAR[b];
  return out;
}

// transformers' pattern, compiled with regex.IGNORECASE. The text is lower-cased already; the flag still
// matters for case-fold equivalents such as "'ſ", which JS `iu` and Python `regex` both fold to "'s".
const SLOW_SPLIT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;
// The converter's pattern for tokenizers (no specials, no IGNORECASE). Oniguruma's \s is Unicode White_Space;
// JS \s differs (it has U+FEFF and lacks U+0085), so spell the property out.
const FAST_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\p{White_Space}\p{L}\p{N}]+/gu;
const SLOW_SPECIAL_PIECES = new Set([CLIP_BOS_TOKEN, CLIP_EOS_TOKEN]);

const OTHER_CATEGORY = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;

function isCjkIdeograph(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/**
 * The slow tokenizer's text clean-up (BasicTokenizer + `" ".join`), in transformers' order: the character
 * filter and CJK spacing run before NFC, lower-casing runs per whitespace-separated word (so Python's
 * final-sigma rule sees word boundaries exactly as `str.lower()` does there).
 */
export function clipBasicClean(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) {
      out += ' ';
    } else if (cp === 0 || cp === 0xfffd || OTHER_CATEGORY.test(ch)) {
      continue;
    } else if (isCjkIdeograph(cp)) {
      out += ` ${ch} `;
    } else {
      out += ch;
    }
  }
  // Python's str.split() also breaks on U+2028/U+2029 (Zl/Zp survive the filter above); every other
  // str.isspace() character was already dropped (Cc) or turned into a space (Zs).
  return out
    .normalize('NFC')
    .split(/[ \u2028\u2029]+/)
    .filter((word) => word.length > 0)
    .map((word) => word.toLowerCase())
    .join(' ');
}

/** The fast tokenizer's normaliser: NFC, White_Space runs → " ", per-character lowercase (as Rust does it). */
export function clipFastNormalize(text: string): string {
  const spaced = text.normalize('NFC').replace(/\p{White_Space}+/gu, ' ');
  let out = '';
  for (const ch of spaced) out += ch.toLowerCase();
  return out;
}

export type ClipTextFlavor = 'slow' | 'fast';
export type ClipTokenizerBackend = 'vocab-merges' | 'tokenizer-json';

/** A token added on top of the BPE vocabulary (special tokens included), as transformers' AddedToken. */
export interface ClipAddedToken {
  readonly content: string;
  readonly id: number;
  readonly special: boolean;
  /** Fast flavor only: matched after normalisation (so case-insensitively) instead of on the raw text. */
  readonly normalized: boolean;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  readonly singleWord: boolean;
}

/** How a special token is given: its text, or an added-token description (ids come from the vocabulary). */
export type ClipSpecialTokenInit = string | (Partial<Omit<ClipAddedToken, 'id' | 'content'>> & { content: string });

export interface ClipTokenizerOptions {
  bosToken?: ClipSpecialTokenInit;
  eosToken?: ClipSpecialTokenInit;
  unkToken?: ClipSpecialTokenInit;
  /** `<|endoftext|>` (SD 1.x, the default) or `!` (SD 2.x). */
  padToken?: ClipSpecialTokenInit;
  additionalSpecialTokens?: readonly ClipSpecialTokenInit[];
  /** Extra added tokens with explicit ids (e.g. textual-inversion tokens). */
  addedTokens?: readonly (Partial<ClipAddedToken> & { content: string; id: number })[];
  modelMaxLength?: number;
  flavor?: ClipTextFlavor;
  /**
   * Merges used, after the `#version` header. Default: transformers' cap {@link TRANSFORMERS_MAX_MERGES} when
   * the vocabulary is at most OpenAI's size (a no-op for every real CLIP merges.txt, and the exact transformers
   * behaviour should a longer file come with it), no cap for bigger custom vocabularies, whose extra merges
   * transformers' Python tokenizer would silently ignore (leaving vocabulary entries unreachable) while its
   * fast tokenizer uses them; we side with using them.
   */
  maxMerges?: number;
  /** Default for {@link ClipTokenizer.decode}'s `cleanUpTokenizationSpaces`. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface ClipFromDirectoryOptions {
  flavor?: ClipTextFlavor;
  /**
   * `'auto'` (default): `tokenizer.json` when the folder has one, else vocab.json + merges.txt. Both give the
   * same ids when the files describe the same tokenizer.
   */
  backend?: 'auto' | ClipTokenizerBackend;
}

export interface ClipBatchEncodeOptions {
  /** Default: the tokenizer's `modelMaxLength` (77 for CLIP). */
  maxLength?: number;
  /** `'max_length'` (default, what diffusers uses) or `'longest'` (pad to the longest row, still ≤ maxLength). */
  padding?: 'max_length' | 'longest';
}

export interface ClipBatchEncoding {
  /** Row-major `[batch, length]`: BOS, content (cut to `maxLength − 2`), EOS, then pad ids. */
  inputIds: Int32Array;
  /** 1 for BOS..EOS, 0 for padding. */
  attentionMask: Int32Array;
  shape: [number, number];
  /** Per row: whether content tokens were cut to fit (diffusers warns about this). */
  truncated: boolean[];
}

export interface ClipDecodeOptions {
  skipSpecialTokens?: boolean;
  /** transformers' `clean_up_tokenization` (" ." → "." etc.). Default: the tokenizer config's value, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

/** The shape of a CLIP `tokenizer.json` as transformers' CLIP converter writes it (see {@link buildClipTokenizerJson}). */
export interface ClipTokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: {
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }[];
  normalizer: Record<string, unknown>;
  pre_tokenizer: Record<string, unknown>;
  post_processor: Record<string, unknown>;
  decoder: Record<string, unknown>;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: string;
    continuing_subword_prefix: string;
    end_of_word_suffix: string;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

/**
 * A `tokenizer.json` equivalent to what transformers' `CLIPConverter` (CLIPTokenizerFast) writes for this
 * vocabulary: NFC/whitespace/lowercase normaliser, CLIP split + ByteLevel pre-tokeniser, BPE with `</w>`,
 * RobertaProcessing with BOS/EOS. `merges` may include the `#version` header line.
 */
export function buildClipTokenizerJson(
  vocab: Readonly<Record<string, number>>,
  merges: readonly string[],
  options: { bosToken?: string; eosToken?: string; unkToken?: string; padToken?: string } = {},
): ClipTokenizerJson {
  const bos = options.bosToken ?? CLIP_BOS_TOKEN;
  const eos = options.eosToken ?? CLIP_EOS_TOKEN;
  const unk = options.unkToken ?? CLIP_EOS_TOKEN;
  const pad = options.padToken ?? CLIP_EOS_TOKEN;
  const idOf = (token: string): number => {
    const id = vocab[token];
    if (id === undefined) throw new Error(`buildClipTokenizerJson: '${token}' is not in the vocabulary`);
    return id;
  };
  const added: ClipTokenizerJson['added_tokens'] = [];
  const add = (content: string, normalized: boolean) => {
    if (added.some((t) => t.content === content)) return;
    added.push({ id: idOf(content), content, single_word: false, lstrip: false, rstrip: false, normalized, special: true });
  };
  // CLIPTokenizer wraps bos/eos/unk in AddedToken(normalized=True); a plain-string pad is registered unnormalized.
  add(bos, true);
  add(eos, true);
  add(unk, true);
  add(pad, false);
  added.sort((a, b) => a.id - b.id);
  const body = merges.length > 0 && merges[0].startsWith('#version') ? merges.slice(1) : merges;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, idOf(eos)],
      cls: [bos, idOf(bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: { ...vocab },
      merges: body.map((line) => line.trim()).filter((line) => line.length > 0),
    },
  };
}

// ----------------------------------------------------------------------------------------------------------------
// BPE backends: where the vocabulary lives and who runs the merges.
// ----------------------------------------------------------------------------------------------------------------

interface BpeBackend {
  readonly kind: ClipTokenizerBackend;
  /** Entries in the base vocabulary (transformers' `vocab_size`: added tokens not counted). */
  readonly vocabSize: number;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** A byte-encoded word → its BPE symbols; the last carries `</w>`. */
  bpe(word: string): readonly string[];
  tokens(): Iterable<string>;
}

/** Unbounded in transformers; bounded here so a long-running server does not grow without limit. */
const BPE_CACHE_LIMIT = 65536;

class OwnBpe implements BpeBackend {
  readonly kind = 'vocab-merges' as const;
  private readonly ranks = new Map<string, number>();
  private readonly decoder = new Map<number, string>();
  private readonly cache = new Map<string, readonly string[]>();

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    merges: readonly (readonly [string, string])[],
  ) {
    // Later duplicates overwrite earlier ones, as with Python's dict(zip(merges, range(n))).
    merges.forEach(([a, b], rank) => this.ranks.set(pairKey(a, b), rank));
    for (const [token, id] of vocab) this.decoder.set(id, token);
  }

  get vocabSize(): number {
    return this.vocab.size;
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.decoder.get(id);
  }

  tokens(): Iterable<string> {
    return this.vocab.keys();
  }

  bpe(word: string): readonly string[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    // Byte-encoded words are all BMP characters, so UTF-16 units are symbols.
    let symbols = word.split('');
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best = Infinity;
      let bestAt = -1;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.ranks.get(pairKey(symbols[i], symbols[i + 1]));
        if (rank !== undefined && rank < best) {
          best = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      const first = symbols[bestAt];
      const second = symbols[bestAt + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(symbols[i]);
          i += 1;
        }
      }
      symbols = merged;
    }
    if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, symbols);
    return symbols;
  }
}

// Symbols never contain whitespace (bytes_to_unicode has none), so a space cannot make two pairs collide.
function pairKey(a: string, b: string): string {
  return `${a} ${b}`;
}

class TokenizersJsBpe implements BpeBackend {
  readonly kind = 'tokenizer-json' as const;
  private readonly decoder = new Map<number, string>();

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    private readonly model: HfBpeModel,
  ) {
    for (const [token, id] of vocab) this.decoder.set(id, token);
  }

  get vocabSize(): number {
    return this.vocab.size;
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.decoder.get(id);
  }

  tokens(): Iterable<string> {
    return this.vocab.keys();
  }

  bpe(word: string): readonly string[] {
    return this.model.bpe(word);
  }
}

// ----------------------------------------------------------------------------------------------------------------
// The tokenizer
// ----------------------------------------------------------------------------------------------------------------

interface SpecialSpec {
  content: string;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

interface SpecialSpecs {
  bos: SpecialSpec;
  eos: SpecialSpec;
  unk: SpecialSpec;
  pad: SpecialSpec;
  additional: SpecialSpec[];
}

interface TokenizerInit {
  backend: BpeBackend;
  flavor: ClipTextFlavor;
  specials: SpecialSpecs;
  addedTokens: ClipAddedToken[];
  modelMaxLength: number;
  cleanUpTokenizationSpaces: boolean;
  /** Full tokenizers.js pipeline, used for the fast flavor when loaded from tokenizer.json. */
  hf?: HfTokenizer;
}

interface Piece {
  token: string;
  id: number;
}

export class ClipTokenizer {
  readonly flavor: ClipTextFlavor;
  readonly modelMaxLength: number;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  /** Added tokens by id (special tokens included), as transformers' `added_tokens_decoder`. */
  readonly addedTokens: readonly ClipAddedToken[];

  private readonly backend: BpeBackend;
  private readonly cleanUpTokenizationSpaces: boolean;
  private readonly hf: HfTokenizer | undefined;
  private readonly addedByContent = new Map<string, ClipAddedToken>();
  private readonly addedById = new Map<number, ClipAddedToken>();
  private readonly specialContents: ReadonlySet<string>;
  private readonly specialIds: ReadonlySet<number>;
  /** Added tokens decode() emits verbatim, outside byte decoding (transformers' `legacy_added_tokens`). */
  private readonly verbatimOnDecode: ReadonlySet<string>;
  private readonly rawMatcher: TokenMatcher;
  private readonly normalizedMatcher: TokenMatcher;

  private constructor(init: TokenizerInit) {
    this.backend = init.backend;
    this.flavor = init.flavor;
    this.hf = init.hf;
    this.modelMaxLength = init.modelMaxLength;
    this.cleanUpTokenizationSpaces = init.cleanUpTokenizationSpaces;

    for (const token of init.addedTokens) {
      this.addedByContent.set(token.content, token);
      this.addedById.set(token.id, token);
    }
    // transformers' PreTrainedTokenizer.__init__: every special token becomes an added token; one already in the
    // vocabulary keeps its id, a new one gets the next free id (len of vocab ∪ added, then counting up).
    const { bos, eos, unk, pad, additional } = init.specials;
    const specialSpecs = [bos, eos, unk, pad, ...additional];
    let nextId = new Set([...this.backend.tokens(), ...this.addedByContent.keys()]).size;
    for (const spec of specialSpecs) {
      if (this.addedByContent.has(spec.content) || spec.content === '') continue;
      const id = this.backend.tokenToId(spec.content) ?? nextId++;
      const token: ClipAddedToken = { ...spec, id, special: true };
      this.addedByContent.set(token.content, token);
      this.addedById.set(token.id, token);
    }
    this.addedTokens = [...this.addedById.values()].sort((a, b) => a.id - b.id);

    this.bosToken = bos.content;
    this.eosToken = eos.content;
    this.unkToken = unk.content;
    this.padToken = pad.content;
    const unkId = this.addedByContent.get(unk.content)?.id ?? this.backend.tokenToId(unk.content);
    if (unkId === undefined) throw new Error(`ClipTokenizer: the unknown token '${unk.content}' has no id`);
    this.unkTokenId = unkId;
    this.bosTokenId = this.tokenId(bos.content);
    this.eosTokenId = this.tokenId(eos.content);
    this.padTokenId = this.tokenId(pad.content);

    this.specialContents = new Set(specialSpecs.map((s) => s.content));
    this.specialIds = new Set([...this.specialContents].map((c) => this.tokenId(c)));
    const verbatim = new Set<string>();
    for (const token of this.addedTokens) {
      if (!this.specialContents.has(token.content)) verbatim.add(token.content);
    }
    for (const spec of additional) {
      if (this.tokenId(spec.content) >= this.vocabSize) verbatim.add(spec.content);
    }
    this.verbatimOnDecode = verbatim;

    this.rawMatcher = new TokenMatcher(
      this.addedTokens.filter((t) => this.flavor === 'slow' || !t.normalized).map((t) => t.content),
    );
    this.normalizedMatcher = new TokenMatcher(
      this.flavor === 'fast'
        ? this.addedTokens.filter((t) => t.normalized).map((t) => clipFastNormalize(t.content))
        : [],
    );
  }

  /**
   * Build from in-memory vocabulary and merges (the lines of merges.txt, with or without the `#version` header).
   * Uses the vocab/merges backend.
   */
  static fromVocabAndMerges(
    vocab: Readonly<Record<string, number>>,
    merges: readonly string[],
    options: ClipTokenizerOptions = {},
  ): ClipTokenizer {
    const vocabMap = parseVocab(vocab, 'vocab');
    const pairs = parseMerges(merges, 'merges', false);
    const cap = options.maxMerges ?? (vocabMap.size <= OPENAI_CLIP_VOCAB_SIZE ? TRANSFORMERS_MAX_MERGES : Infinity);
    const backend = new OwnBpe(vocabMap, pairs.slice(0, cap));
    return new ClipTokenizer({
      backend,
      flavor: options.flavor ?? 'slow',
      specials: specialsFromOptions(options),
      addedTokens: (options.addedTokens ?? []).map((t) => addedTokenFrom(t, t.id)),
      modelMaxLength: checkedMaxLength(options.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH, 'modelMaxLength'),
      cleanUpTokenizationSpaces: options.cleanUpTokenizationSpaces ?? false,
    });
  }

  /**
   * Load a diffusers `tokenizer/` folder. Special tokens are resolved as transformers' `from_pretrained` does:
   * with `added_tokens_decoder` in tokenizer_config.json (transformers ≥ 4.34) the config is authoritative and
   * special_tokens_map.json is ignored; without it (older saves, e.g. the SD 2.x hub folders) the map's values
   * override the config's (which is why SD 2.x pads with "!") and added_tokens.json / tokenizer.json's
   * `added_tokens` are read.
   */
  static async fromDirectory(dir: string, options: ClipFromDirectoryOptions = {}): Promise<ClipTokenizer> {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new ModelError(`tokenizer folder '${dir}' does not exist (expected a diffusers tokenizer/ folder)`);
    }
    const paths = {
      vocab: join(dir, 'vocab.json'),
      merges: join(dir, 'merges.txt'),
      config: join(dir, 'tokenizer_config.json'),
      specialMap: join(dir, 'special_tokens_map.json'),
      addedTokens: join(dir, 'added_tokens.json'),
      tokenizerJson: join(dir, 'tokenizer.json'),
    };
    const hasTokenizerJson = existsSync(paths.tokenizerJson);
    const requested = options.backend ?? 'auto';
    const backendKind: ClipTokenizerBackend =
      requested === 'auto' ? (hasTokenizerJson ? 'tokenizer-json' : 'vocab-merges') : requested;
    const flavor = options.flavor ?? 'slow';

    const config = (await readJsonObject(paths.config, 'the tokenizer configuration', true)) ?? {};
    const tokenizerJson =
      hasTokenizerJson || backendKind === 'tokenizer-json'
        ? parseTokenizerJson(
            (await readJsonObject(paths.tokenizerJson, 'a tokenizers tokenizer.json', false)) as Record<string, unknown>,
            paths.tokenizerJson,
          )
        : undefined;

    let backend: BpeBackend;
    let hf: HfTokenizer | undefined;
    if (backendKind === 'vocab-merges') {
      for (const [path, what] of [
        [paths.vocab, 'the BPE vocabulary: a JSON object mapping token strings to integer ids'],
        [paths.merges, 'the BPE merges: a "#version" header line, then one "first second" pair per line'],
      ] as const) {
        if (!existsSync(path)) {
          throw new ModelError(
            `tokenizer file '${path}' is missing (${what})${hasTokenizerJson ? '' : '; a tokenizer.json would also do'}`,
          );
        }
      }
      const vocab = parseVocab(
        (await readJsonObject(paths.vocab, 'the BPE vocabulary', false)) as Record<string, unknown>,
        paths.vocab,
      );
      const merges = parseMerges((await readText(paths.merges)).split('\n'), paths.merges, true);
      const cap = vocab.size <= OPENAI_CLIP_VOCAB_SIZE ? TRANSFORMERS_MAX_MERGES : Infinity;
      backend = new OwnBpe(vocab, merges.slice(0, cap));
    } else {
      const json = tokenizerJson as ParsedTokenizerJson;
      hf = json.tokenizer;
      backend = new TokenizersJsBpe(json.vocab, json.model);
    }

    const specialsRaw: Record<string, unknown> = {};
    for (const key of SPECIAL_KEYS) if (config[key] !== undefined) specialsRaw[key] = config[key];
    const added: ClipAddedToken[] = [];
    if (config.added_tokens_decoder !== undefined) {
      const decoder = config.added_tokens_decoder;
      if (!isPlainObject(decoder)) {
        throw new ModelError(`'${paths.config}': added_tokens_decoder must be an object of id → token description`);
      }
      for (const [idText, value] of Object.entries(decoder)) {
        added.push(addedTokenFromJson(value, Number(idText), paths.config, `added_tokens_decoder.${idText}`));
      }
    } else {
      const specialMap = await readJsonObject(paths.specialMap, 'the special tokens map', true);
      if (specialMap) {
        for (const [key, value] of Object.entries(specialMap)) {
          if (key === 'additional_special_tokens' && Array.isArray(value)) {
            const merged = Array.isArray(specialsRaw[key]) ? [...(specialsRaw[key] as unknown[])] : [];
            for (const token of value) if (!merged.some((t) => sameToken(t, token))) merged.push(token);
            specialsRaw[key] = merged;
          } else {
            specialsRaw[key] = isPlainObject(value) ? { ...value, special: true } : value;
          }
        }
      }
      const addedFile = await readJsonObject(paths.addedTokens, 'the added tokens', true);
      if (addedFile) {
        const specialTexts = new Set(
          SPECIAL_KEYS.flatMap((key) => {
            const v = specialsRaw[key];
            return (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]).map(tokenText);
          }),
        );
        for (const [content, id] of Object.entries(addedFile)) {
          if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
            throw new ModelError(`'${paths.addedTokens}': the id of '${content}' must be a non-negative integer`);
          }
          const special = specialTexts.has(content);
          added.push({ content, id, special, normalized: !special, lstrip: false, rstrip: false, singleWord: false });
        }
      }
      if (tokenizerJson) added.push(...tokenizerJson.addedTokens);
    }
    if (backendKind === 'tokenizer-json' && tokenizerJson) {
      // A fast tokenizer always has tokenizer.json's added tokens, whatever the config says.
      for (const token of tokenizerJson.addedTokens) {
        if (!added.some((t) => t.id === token.id)) added.push(token);
      }
    }

    const specials = specialsFromConfig(specialsRaw, paths.config);
    const modelMaxLength = modelMaxLengthFromConfig(config.model_max_length, paths.config);
    const cleanUp = config.clean_up_tokenization_spaces;

    if (hf && flavor === 'fast') {
      // Give tokenizers.js the special tokens the config adds (e.g. SD 2.x's "!"), as transformers' fast tokenizer
      // registers them with its backend; tokenizer.json itself may not list them.
      hf = withExtraAddedTokens(tokenizerJson as ParsedTokenizerJson, specials, backend, paths.tokenizerJson);
    }

    return new ClipTokenizer({
      backend,
      flavor,
      specials,
      addedTokens: dedupeAdded(added),
      modelMaxLength,
      cleanUpTokenizationSpaces: typeof cleanUp === 'boolean' ? cleanUp : false,
      hf: flavor === 'fast' ? hf : undefined,
    });
  }

  /** Which files the BPE runs from. */
  get backendKind(): ClipTokenizerBackend {
    return this.backend.kind;
  }

  /** Entries in the BPE vocabulary (transformers' `vocab_size`; added tokens not counted). */
  get vocabSize(): number {
    return this.backend.vocabSize;
  }

  /** Distinct ids including added tokens (transformers' `len(tokenizer)`). */
  get size(): number {
    return new Set([...this.backend.tokens(), ...this.addedByContent.keys()]).size;
  }

  /** Content token ids: no BOS/EOS, no truncation. */
  encode(text: string): number[] {
    return this.pieces(text).map((p) => p.id);
  }

  /** Content tokens (BPE symbols with `</w>`, added tokens verbatim). */
  tokenize(text: string): string[] {
    return this.pieces(text).map((p) => p.token);
  }

  /**
   * diffusers' `tokenizer(texts, padding="max_length", max_length=77, truncation=True)`: per row BOS, the content
   * cut to `maxLength − 2` tokens, EOS, then the pad id.
   */
  batchEncode(texts: readonly string[], options: ClipBatchEncodeOptions = {}): ClipBatchEncoding {
    const maxLength = checkedMaxLength(options.maxLength ?? this.modelMaxLength, 'maxLength');
    const rows = texts.map((text) => {
      const content = this.encode(text);
      const truncated = content.length > maxLength - 2;
      return { ids: [this.bosTokenId, ...(truncated ? content.slice(0, maxLength - 2) : content), this.eosTokenId], truncated };
    });
    const width = options.padding === 'longest' ? Math.max(2, ...rows.map((r) => r.ids.length)) : maxLength;
    const inputIds = new Int32Array(rows.length * width).fill(this.padTokenId);
    const attentionMask = new Int32Array(rows.length * width);
    rows.forEach((row, r) => {
      inputIds.set(row.ids, r * width);
      attentionMask.fill(1, r * width, r * width + row.ids.length);
    });
    return { inputIds, attentionMask, shape: [rows.length, width], truncated: rows.map((r) => r.truncated) };
  }

  /**
   * transformers' `decode`: byte-level decoding with `</w>` read as a space, special tokens kept unless skipped.
   * Unknown ids throw (transformers fails on them too, with a TypeError).
   */
  decode(ids: readonly number[], options: ClipDecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces;
    const subTexts: string[] = [];
    let current: string[] = [];
    for (const id of ids) {
      if (skip && this.specialIds.has(id)) continue;
      const token = this.addedById.get(id)?.content ?? this.backend.idToToken(id);
      if (token === undefined) throw new RangeError(`ClipTokenizer.decode: id ${id} is not in the vocabulary`);
      if (skip && this.specialContents.has(token)) continue;
      if (this.verbatimOnDecode.has(token)) {
        if (current.length > 0) {
          const text = tokensToString(current);
          if (text.length > 0) subTexts.push(text);
          current = [];
        }
        subTexts.push(token);
      } else {
        current.push(token);
      }
    }
    if (current.length > 0) subTexts.push(tokensToString(current));
    const text = subTexts.join(' ');
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  // --------------------------------------------------------------------------------------------------------------

  /** transformers' convert_tokens_to_ids: added tokens first, then the vocabulary, else the unknown token. */
  private tokenId(token: string): number {
    return this.addedByContent.get(token)?.id ?? this.backend.tokenToId(token) ?? this.unkTokenId;
  }

  private pieces(text: string): Piece[] {
    if (this.flavor === 'fast') return this.hf ? this.hfPieces(text) : this.fastPieces(text);
    return this.slowPieces(text);
  }

  /** PreTrainedTokenizer.tokenize → CLIPTokenizer._tokenize (no ftfy). */
  private slowPieces(text: string): Piece[] {
    const out: Piece[] = [];
    for (const chunk of this.splitAddedSlow(text)) {
      if (chunk.length === 0) continue;
      const added = this.addedByContent.get(chunk);
      if (added) {
        out.push({ token: chunk, id: added.id });
        continue;
      }
      for (const match of clipBasicClean(chunk).matchAll(SLOW_SPLIT)) {
        const piece = match[0];
        // transformers seeds its BPE cache with the two literals, so they come out whole, without </w>.
        const tokens = SLOW_SPECIAL_PIECES.has(piece) ? [piece] : this.backend.bpe(byteEncode(piece));
        for (const token of tokens) out.push({ token, id: this.tokenId(token) });
      }
    }
    return out;
  }

  /**
   * transformers' Trie split on added tokens (case-sensitive, on the raw text) and its lstrip/rstrip/single_word
   * adjustments; chunks equal to an added token's text are that token.
   */
  private splitAddedSlow(text: string): string[] {
    const chunks = this.rawMatcher.split(text);
    for (let i = 0; i < chunks.length; i++) {
      const token = this.addedByContent.get(chunks[i]);
      if (!token) continue;
      const left = i > 0 ? chunks[i - 1] : undefined;
      const right = i < chunks.length - 1 ? chunks[i + 1] : undefined;
      if (token.rstrip && right) chunks[i + 1] = right.trimStart();
      if (token.lstrip && left) chunks[i - 1] = left.trimEnd();
      if (token.singleWord && left && !left.endsWith(' ')) {
        chunks[i - 1] += chunks[i];
        chunks[i] = '';
      } else if (token.singleWord && right && !right.startsWith(' ')) {
        chunks[i] += right;
        chunks[i + 1] = '';
      }
    }
    return chunks;
  }

  /** The tokenizers pipeline: unnormalized added tokens on raw text, normalise, normalized ones, split, BPE. */
  private fastPieces(text: string): Piece[] {
    const out: Piece[] = [];
    for (const chunk of this.rawMatcher.split(text)) {
      if (chunk.length === 0) continue;
      const raw = this.addedByContent.get(chunk);
      if (raw && !raw.normalized) {
        out.push({ token: chunk, id: raw.id });
        continue;
      }
      for (const part of this.normalizedMatcher.split(clipFastNormalize(chunk))) {
        const added = this.normalizedMatcher.has(part) ? this.addedByNormalizedContent(part) : undefined;
        if (added) {
          out.push({ token: added.content, id: added.id });
          continue;
        }
        for (const match of part.matchAll(FAST_SPLIT)) {
          for (const token of this.backend.bpe(byteEncode(match[0]))) out.push({ token, id: this.tokenId(token) });
        }
      }
    }
    return out;
  }

  private addedByNormalizedContent(normalized: string): ClipAddedToken | undefined {
    return this.addedTokens.find((t) => t.normalized && clipFastNormalize(t.content) === normalized);
  }

  private hfPieces(text: string): Piece[] {
    const encoding: HfEncoding = (this.hf as HfTokenizer).encode(text, { add_special_tokens: false });
    return encoding.ids.map((id, i) => ({ token: encoding.tokens[i], id }));
  }
}

// ----------------------------------------------------------------------------------------------------------------
// Added-token matching
// ----------------------------------------------------------------------------------------------------------------

/** Leftmost-longest splitting on a set of literal strings (what transformers' Trie and tokenizers' AC do). */
class TokenMatcher {
  private readonly byFirst = new Map<string, string[]>();
  private readonly all: ReadonlySet<string>;

  constructor(tokens: readonly string[]) {
    this.all = new Set(tokens.filter((t) => t.length > 0));
    for (const token of this.all) {
      const list = this.byFirst.get(token[0]) ?? [];
      list.push(token);
      this.byFirst.set(token[0], list);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.length - a.length);
  }

  has(text: string): boolean {
    return this.all.has(text);
  }

  split(text: string): string[] {
    if (this.all.size === 0) return [text];
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < text.length; ) {
      const match = this.byFirst.get(text[i])?.find((token) => text.startsWith(token, i));
      if (match === undefined) {
        i++;
        continue;
      }
      if (i > start) out.push(text.slice(start, i));
      out.push(match);
      i += match.length;
      start = i;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }
}

// ----------------------------------------------------------------------------------------------------------------
// Decoding helpers
// ----------------------------------------------------------------------------------------------------------------

function tokensToString(tokens: readonly string[]): string {
  const bytes: number[] = [];
  for (const ch of tokens.join('')) {
    const b = CHAR_TO_BYTE.get(ch);
    // Not a byte-level character (only possible in a special token's text): keep it as its own UTF-8.
    if (b === undefined) bytes.push(...utf8Encoder.encode(ch));
    else bytes.push(b);
  }
  return utf8Decoder.decode(new Uint8Array(bytes)).replaceAll(END_OF_WORD, ' ').trim();
}

function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

// ----------------------------------------------------------------------------------------------------------------
// File parsing
// ----------------------------------------------------------------------------------------------------------------

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'additional_special_tokens'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new ModelError(`tokenizer file '${path}' cannot be read (${(error as Error).message})`, { cause: error });
  }
}

async function readJsonObject(
  path: string,
  what: string,
  optional: boolean,
): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(path)) {
    if (optional) return undefined;
    throw new ModelError(`tokenizer file '${path}' is missing (${what})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readText(path));
  } catch (error) {
    if (error instanceof ModelError) throw error;
    throw new ModelError(`tokenizer file '${path}' is not valid JSON (${(error as Error).message}); expected ${what}`);
  }
  if (!isPlainObject(parsed)) throw new ModelError(`tokenizer file '${path}' must hold a JSON object (${what})`);
  return parsed;
}

function parseVocab(vocab: Readonly<Record<string, unknown>>, source: string): Map<string, number> {
  if (!isPlainObject(vocab)) throw new ModelError(`'${source}': the vocabulary must be an object of token → id`);
  const map = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new ModelError(`'${source}': the id of token ${JSON.stringify(token)} must be a non-negative integer, got ${JSON.stringify(id)}`);
    }
    map.set(token, id);
  }
  if (map.size === 0) throw new ModelError(`'${source}': the vocabulary is empty`);
  return map;
}

/**
 * merges.txt lines → pairs. transformers drops the first line unconditionally (`[1:]`); a file whose first line
 * is not the `#version` header would silently lose a merge there, so a file is required to have the header.
 */
function parseMerges(lines: readonly string[], source: string, requireHeader: boolean): [string, string][] {
  // Python: read().strip().split("\n") – outer blank lines go, inner ones would be malformed merges.
  let start = 0;
  let end = lines.length;
  while (start < end && lines[start].trim() === '') start++;
  while (end > start && lines[end - 1].trim() === '') end--;
  if (start < end && lines[start].startsWith('#version')) start++;
  else if (requireHeader) {
    throw new ModelError(`'${source}': the first line must be the '#version: 0.2' header of a BPE merges file`);
  }
  const pairs: [string, string][] = [];
  for (let i = start; i < end; i++) {
    const parts = lines[i].trim().split(/\s+/);
    if (parts.length !== 2 || parts[0] === '') {
      throw new ModelError(`'${source}' line ${i + 1}: expected two space-separated symbols, got ${JSON.stringify(lines[i])}`);
    }
    pairs.push([parts[0], parts[1]]);
  }
  return pairs;
}

function tokenText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (isPlainObject(value) && typeof value.content === 'string') return value.content;
  return '';
}

function sameToken(a: unknown, b: unknown): boolean {
  return tokenText(a) === tokenText(b);
}

function bool(value: unknown, fallback: boolean): boolean {
  return typeof value === 'boolean' ? value : fallback;
}

/** transformers' AddedToken(**dict): `normalized` defaults to `not special`. */
function addedTokenFromJson(value: unknown, id: number, source: string, key: string): ClipAddedToken {
  if (!isPlainObject(value) || typeof value.content !== 'string' || !Number.isInteger(id) || id < 0) {
    throw new ModelError(`'${source}': ${key} must be {"content": string, ...} under a non-negative integer id`);
  }
  const special = bool(value.special, false);
  return {
    content: value.content,
    id,
    special,
    normalized: bool(value.normalized, !special),
    lstrip: bool(value.lstrip, false),
    rstrip: bool(value.rstrip, false),
    singleWord: bool(value.single_word, false),
  };
}

function addedTokenFrom(init: Partial<ClipAddedToken> & { content: string }, id: number): ClipAddedToken {
  const special = init.special ?? false;
  return {
    content: init.content,
    id,
    special,
    normalized: init.normalized ?? !special,
    lstrip: init.lstrip ?? false,
    rstrip: init.rstrip ?? false,
    singleWord: init.singleWord ?? false,
  };
}

function dedupeAdded(tokens: readonly ClipAddedToken[]): ClipAddedToken[] {
  const byId = new Map<number, ClipAddedToken>();
  for (const token of tokens) byId.set(token.id, token); // later sources win, as dict updates do in transformers
  return [...byId.values()];
}

/**
 * CLIPTokenizer wraps plain-string bos/eos/unk in AddedToken(lstrip=False, rstrip=False), whose `normalized`
 * defaults to True; other plain strings (pad, additional) are registered as special with normalized=False.
 */
function specialSpec(value: ClipSpecialTokenInit | unknown, wrapped: boolean, source: string, key: string): SpecialSpec {
  if (typeof value === 'string') {
    return { content: value, normalized: wrapped, lstrip: false, rstrip: false, singleWord: false };
  }
  if (isPlainObject(value) && typeof value.content === 'string') {
    const special = bool(value.special, false);
    return {
      content: value.content,
      normalized: bool(value.normalized, !special),
      lstrip: bool(value.lstrip, false),
      rstrip: bool(value.rstrip, false),
      singleWord: bool(value.single_word ?? value.singleWord, false),
    };
  }
  throw new ModelError(`'${source}': ${key} must be a string or {"content": string, ...}, got ${JSON.stringify(value)}`);
}

function specialsFromConfig(raw: Record<string, unknown>, source: string): SpecialSpecs {
  const pick = (key: string, fallback: string, wrapped: boolean) =>
    specialSpec(raw[key] === undefined || raw[key] === null ? fallback : raw[key], wrapped, source, key);
  const additionalRaw = raw.additional_special_tokens;
  if (additionalRaw !== undefined && additionalRaw !== null && !Array.isArray(additionalRaw)) {
    throw new ModelError(`'${source}': additional_special_tokens must be a list`);
  }
  return {
    bos: pick('bos_token', CLIP_BOS_TOKEN, true),
    eos: pick('eos_token', CLIP_EOS_TOKEN, true),
    unk: pick('unk_token', CLIP_EOS_TOKEN, true),
    pad: pick('pad_token', CLIP_EOS_TOKEN, false),
    additional: ((additionalRaw as unknown[] | undefined) ?? []).map((v, i) =>
      specialSpec(v, false, source, `additional_special_tokens[${i}]`),
    ),
  };
}

function specialsFromOptions(options: ClipTokenizerOptions): SpecialSpecs {
  const src = 'ClipTokenizer options';
  return {
    bos: specialSpec(options.bosToken ?? CLIP_BOS_TOKEN, true, src, 'bosToken'),
    eos: specialSpec(options.eosToken ?? CLIP_EOS_TOKEN, true, src, 'eosToken'),
    unk: specialSpec(options.unkToken ?? CLIP_EOS_TOKEN, true, src, 'unkToken'),
    pad: specialSpec(options.padToken ?? CLIP_EOS_TOKEN, false, src, 'padToken'),
    additional: (options.additionalSpecialTokens ?? []).map((v, i) =>
      specialSpec(v, false, src, `additionalSpecialTokens[${i}]`),
    ),
  };
}

function checkedMaxLength(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 2) {
    throw new RangeError(`ClipTokenizer: ${name} must be an integer ≥ 2 (room for BOS and EOS), got ${value}`);
  }
  return value;
}

function modelMaxLengthFromConfig(value: unknown, source: string): number {
  if (value === undefined || value === null) return DEFAULT_MODEL_MAX_LENGTH;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 2 || (value < UNSET_MODEL_MAX_LENGTH && !Number.isInteger(value))) {
    throw new ModelError(`'${source}': model_max_length must be an integer ≥ 2, got ${JSON.stringify(value)}`);
  }
  return value >= UNSET_MODEL_MAX_LENGTH ? DEFAULT_MODEL_MAX_LENGTH : value;
}

interface ParsedTokenizerJson {
  raw: Record<string, unknown>;
  tokenizer: HfTokenizer;
  model: HfBpeModel;
  vocab: Map<string, number>;
  addedTokens: ClipAddedToken[];
}

function parseTokenizerJson(raw: Record<string, unknown>, source: string): ParsedTokenizerJson {
  const model = raw.model;
  if (!isPlainObject(model) || (model.type !== undefined && model.type !== 'BPE') || !isPlainObject(model.vocab) || !Array.isArray(model.merges)) {
    throw new ModelError(`'${source}': expected a BPE model ("model": {"type": "BPE", "vocab": {...}, "merges": [...]})`);
  }
  if (model.end_of_word_suffix !== END_OF_WORD) {
    throw new ModelError(
      `'${source}': expected a CLIP BPE model with end_of_word_suffix "${END_OF_WORD}", got ${JSON.stringify(model.end_of_word_suffix)}`,
    );
  }
  const vocab = parseVocab(model.vocab, source);
  const addedRaw = raw.added_tokens ?? [];
  if (!Array.isArray(addedRaw)) throw new ModelError(`'${source}': added_tokens must be a list`);
  const addedTokens = addedRaw.map((entry, i) =>
    addedTokenFromJson(entry, isPlainObject(entry) ? Number(entry.id) : NaN, source, `added_tokens[${i}]`),
  );
  const tokenizer = makeHfTokenizer(raw, source);
  const bpeModel: unknown = tokenizer.model;
  if (typeof (bpeModel as Partial<HfBpeModel> | null)?.bpe !== 'function') {
    throw new ModelError(`'${source}': @huggingface/tokenizers did not build a BPE model from it`);
  }
  return { raw, tokenizer, model: bpeModel as HfBpeModel, vocab, addedTokens };
}

function makeHfTokenizer(raw: Record<string, unknown>, source: string): HfTokenizer {
  // tokenizers.js requires these keys to exist (null is fine); older files may omit some.
  const json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...raw };
  try {
    return new HfTokenizer(json, { clean_up_tokenization_spaces: false });
  } catch (error) {
    throw new ModelError(`'${source}': @huggingface/tokenizers cannot load it (${(error as Error).message})`, {
      cause: error,
    });
  }
}

function withExtraAddedTokens(
  parsed: ParsedTokenizerJson,
  specials: SpecialSpecs,
  backend: BpeBackend,
  source: string,
): HfTokenizer {
  const addedRaw = Array.isArray(parsed.raw.added_tokens) ? [...(parsed.raw.added_tokens as unknown[])] : [];
  const present = new Set(parsed.addedTokens.map((t) => t.content));
  let nextId = Math.max(-1, ...parsed.vocab.values(), ...parsed.addedTokens.map((t) => t.id)) + 1;
  let changed = false;
  for (const spec of [specials.bos, specials.eos, specials.unk, specials.pad, ...specials.additional]) {
    if (present.has(spec.content) || spec.content === '') continue;
    present.add(spec.content);
    addedRaw.push({
      id: backend.tokenToId(spec.content) ?? nextId++,
      content: spec.content,
      single_word: spec.singleWord,
      lstrip: spec.lstrip,
      rstrip: spec.rstrip,
      normalized: spec.normalized,
      special: true,
    });
    changed = true;
  }
  return changed ? makeHfTokenizer({ ...parsed.raw, added_tokens: addedRaw }, source) : parsed.tokenizer;
}
