"""A small, deterministic byte-level BPE learner that writes OpenAI-CLIP-format tokenizer files.

    from clip_bpe import learn_clip_bpe, save
    vocab, merges = learn_clip_bpe(captions, num_merges=200)
    save("bundle/tokenizer", vocab, merges, pad_token="<|endoftext|>")

Python 3 standard library only, so fixture scripts and the training code can use it anywhere.

Vocabulary layout (exactly OpenAI CLIP's, so ids mean the same thing as in `openai/clip-vit-*` vocabularies):

    ids 0..255      the 256 bytes_to_unicode() symbols, in bytes_to_unicode() order
    ids 256..511    the same symbols with "</w>" appended (a symbol that ends a word)
    ids 512..       one entry per merge, in merge order: the concatenation of the pair
    last two ids    "<|startoftext|>", "<|endoftext|>"

so `len(vocab) == 512 + len(merges) + 2` and merge i produces token id 512 + i.

Pre-tokenisation is the one transformers' CLIPTokenizer applies when ftfy is not installed (BasicTokenizer
clean-up: control characters dropped, whitespace normalised, spaces around CJK ideographs, NFC, lower-casing),
followed by CLIP's split pattern
    <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
Learning on the words the tokenizer will actually see is what makes the merges useful at inference time. The
standard library's `re` has no \\p{L}, so the pattern is applied by a small scanner over unicodedata categories;
the one thing it does not reproduce is the pattern's IGNORECASE matching of the contractions against non-ASCII
case variants (e.g. "'ſ"), which only matters for exotic input and only changes what is learned, not the format.

Learning: classic BPE (Sennrich et al.). Each distinct word is a tuple of byte symbols with "</w>" on the last;
repeatedly merge the most frequent adjacent pair (counted over word frequencies), merging every occurrence left
to right without overlap -- the same way the tokenizer applies merges, so training-time and inference-time
segmentations agree. Ties are broken by the pair itself (smallest (first, second) in Python string order), which
makes the result independent of dict/hash ordering. A pair whose concatenation is already a token is skipped:
two different merges producing the same string would give one vocab entry two ids (JSON keeps the last), and the
"merge i is id 512 + i" layout would break.
"""

from __future__ import annotations

import heapq
import json
import os
import unicodedata
from collections import Counter, defaultdict
from typing import Dict, Iterable, List, Sequence, Tuple

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MODEL_MAX_LENGTH = 77

_SPECIALS = (BOS_TOKEN, EOS_TOKEN)
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table.

    Printable Latin-1 bytes map to themselves; the rest (controls, space, soft hyphen, ...) are moved to
    U+0100.. so that every byte is a visible, non-whitespace character that BPE can treat as a symbol.
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


_BYTE_ENCODER = bytes_to_unicode()


# ---------------------------------------------------------------------------------------------------------------
# Pre-tokenisation (transformers' no-ftfy CLIPTokenizer path)
# ---------------------------------------------------------------------------------------------------------------


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_clean(text: str) -> str:
    """transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False), then " ".join."""
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
            continue
        elif _is_cjk(cp):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(token.lower() for token in text.split())


def _kind(ch: str) -> str:
    if ch.isspace():
        return "space"
    cat = unicodedata.category(ch)
    if cat.startswith("L"):
        return "letter"
    if cat.startswith("N"):
        return "number"
    return "other"


def pretokenize(text: str) -> List[str]:
    """The words CLIP's split pattern finds in cleaned text (findall semantics: whitespace is dropped)."""
    text = basic_clean(text)
    words: List[str] = []
    i, n = 0, len(text)
    while i < n:
        kind = _kind(text[i])
        if kind == "space":
            i += 1
            continue
        # Alternation order matters: specials and contractions win over the runs below at the same position.
        match = next((s for s in _SPECIALS + _CONTRACTIONS if text.startswith(s, i)), None)
        if match is not None:
            j = i + len(match)
        elif kind == "letter":
            j = i + 1
            while j < n and _kind(text[j]) == "letter":
                j += 1
        elif kind == "number":
            j = i + 1  # [\p{N}]: digits are always single tokens in CLIP
        else:
            j = i + 1
            while j < n and _kind(text[j]) == "other":
                j += 1
        words.append(text[i:j])
        i = j
    return words


def _byte_encode(word: str) -> str:
    return "".join(_BYTE_ENCODER[b] for b in word.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------------------------------------------


def _merge_word(word: Tuple[str, ...], first: str, second: str) -> Tuple[str, ...]:
    out: List[str] = []
    i = 0
    while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
            out.append(first + second)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _pairs(word: Sequence[str]) -> Iterable[Tuple[str, str]]:
    return zip(word, word[1:])


def learn_clip_bpe(captions: List[str], num_merges: int, min_frequency: int = 1) -> Tuple[Dict[str, int], List[str]]:
    """Learn up to `num_merges` merges from `captions`; returns (vocab, merges) in OpenAI CLIP's layout.

    `merges` are "first second" strings in rank order (what merges.txt holds after its header). Fewer than
    `num_merges` come back when no pair occurs at least `min_frequency` times any more.
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    word_freq: Counter = Counter()
    for caption in captions:
        for word in pretokenize(caption):
            if word in _SPECIALS:
                continue  # specials are whole tokens at the end of the vocab, never BPE input
            word_freq[_byte_encode(word)] += 1

    # Distinct words in first-seen order (Counter preserves insertion order): deterministic indices.
    words: List[Tuple[str, ...]] = []
    freqs: List[int] = []
    for encoded, freq in word_freq.items():
        words.append(tuple(encoded[:-1]) + (encoded[-1] + END_OF_WORD,))
        freqs.append(freq)

    pair_count: Dict[Tuple[str, str], int] = defaultdict(int)
    pair_words: Dict[Tuple[str, str], set] = defaultdict(set)
    for idx, word in enumerate(words):
        for pair in _pairs(word):
            pair_count[pair] += freqs[idx]
            pair_words[pair].add(idx)

    # Lazy max-heap: entries go stale when a count changes and are re-checked when popped.
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)

    byte_symbols = list(_BYTE_ENCODER.values())
    taken = set(byte_symbols) | {s + END_OF_WORD for s in byte_symbols} | set(_SPECIALS)
    merges: List[Tuple[str, str]] = []
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        count = pair_count.get(pair, 0)
        if -neg != count:
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < max(min_frequency, 1):
            break
        merged = pair[0] + pair[1]
        if merged in taken:
            continue  # see module docstring: keep one id per token string
        taken.add(merged)
        merges.append(pair)

        changed = set()
        for idx in sorted(pair_words.get(pair, ())):
            old = words[idx]
            new = _merge_word(old, pair[0], pair[1])
            if new == old:
                continue
            freq = freqs[idx]
            for p in _pairs(old):
                pair_count[p] -= freq
                changed.add(p)
            for p in _pairs(new):
                pair_count[p] += freq
                pair_words[p].add(idx)
                changed.add(p)
            words[idx] = new
        for p in changed:
            if pair_count[p] <= 0:
                pair_count.pop(p, None)
                pair_words.pop(p, None)
            else:
                heapq.heappush(heap, (-pair_count[p], p))

    vocab_list = byte_symbols + [s + END_OF_WORD for s in byte_symbols]
    vocab_list += [a + b for a, b in merges]
    vocab_list += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    assert len(vocab) == len(vocab_list), "duplicate vocabulary entry"
    return vocab, [f"{a} {b}" for a, b in merges]


# ---------------------------------------------------------------------------------------------------------------
# Saving in the layout transformers' CLIPTokenizer.save_pretrained writes
# ---------------------------------------------------------------------------------------------------------------


def _added_token(content: str, normalized: bool, special: bool = True) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": normalized,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def save(dirpath: str, vocab: Dict[str, int], merges: List[str], pad_token: str = EOS_TOKEN,
         model_max_length: int = MODEL_MAX_LENGTH) -> None:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `dirpath`.

    The JSON layout follows transformers >= 4.34's save_pretrained for CLIPTokenizer: tokenizer_config.json carries
    `added_tokens_decoder` (which makes transformers ignore special_tokens_map.json on load, so the two files must
    agree); bos/eos/unk are AddedTokens with normalized=True (CLIPTokenizer wraps them itself), while a pad token
    given as a plain string is registered with normalized=False, as transformers does.

    pad_token: "<|endoftext|>" as in SD 1.x, or "!" (id 0) as in SD 2.x.
    model_max_length: the padded sequence length (77 in SD; a model trained on short captions may declare less).
    """
    if pad_token not in vocab:
        raise ValueError(f"pad_token {pad_token!r} is not in the vocabulary")
    for special in _SPECIALS:
        if special not in vocab:
            raise ValueError(f"{special!r} is not in the vocabulary")
    os.makedirs(dirpath, exist_ok=True)

    # save_vocabulary's format: sorted keys, indent 2, non-ASCII kept as is, trailing newline.
    with open(os.path.join(dirpath, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with open(os.path.join(dirpath, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in merges:
            f.write(merge + "\n")

    added = {vocab[BOS_TOKEN]: _added_token(BOS_TOKEN, True), vocab[EOS_TOKEN]: _added_token(EOS_TOKEN, True)}
    if pad_token not in _SPECIALS:
        added[vocab[pad_token]] = _added_token(pad_token, False)
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(k): added[k] for k in sorted(added)},
        "bos_token": BOS_TOKEN,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": EOS_TOKEN,
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS_TOKEN,
    }
    with open(os.path.join(dirpath, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    def as_map_entry(content: str) -> dict:
        entry = _added_token(content, True)
        del entry["special"]  # special_tokens_map.json entries carry no "special" field
        return entry

    special_map = {
        "bos_token": as_map_entry(BOS_TOKEN),
        "eos_token": as_map_entry(EOS_TOKEN),
        "pad_token": pad_token,  # a plain string, as in the SD 1.x and SD 2.x tokenizer folders
        "unk_token": as_map_entry(EOS_TOKEN),
    }
    with open(os.path.join(dirpath, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
