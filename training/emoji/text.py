"""Tokenizer and text encoders for EmojiWorld.

- The tokenizer is an OpenAI-CLIP-format byte-level BPE (vocab.json + merges.txt) learned on the training
  captions with training/common/clip_bpe.py; every template's wording of every training scene is used, so the
  world's words become single tokens while anything else still encodes through the byte symbols.
- The text encoder is training/reference/models.py's CLIPTextModel (SD 1's design: causal pre-LN transformer,
  quick_gelu, final LayerNorm; `last_hidden_state` conditions the UNet). The LDM's text encoder starts from the
  small CLIP's text tower (trained contrastively, clip.py) and is then trained jointly with the UNet (unet.py).
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import torch

from common import log
import models as M  # training/reference/models.py
from clip_bpe import learn_clip_bpe, save as save_bpe  # training/common/clip_bpe.py
from pipelines import ClipTokenizer  # training/reference/pipelines.py (reads a tokenizer/ folder)

MAX_LENGTH = 77  # SD's; EmojiWorld captions need far fewer, and a preset may declare a shorter `max_length`


def build_tokenizer(captions: Sequence[str], num_merges: int, folder: str, max_length: int = MAX_LENGTH) -> "Tokenizer":
    """max_length: the tokenizer's model_max_length (the padded length). Padding every caption to 77 when none is
    longer than 20 tokens makes the text encoder cost as much as the UNet at 16×16 latents."""
    vocab, merges = learn_clip_bpe(list(captions), num_merges)
    longest = max(len(tok_ids) for tok_ids in _pretokenized_lengths(captions, vocab, merges))
    if longest + 2 > max_length:
        raise ValueError(f"a training caption needs {longest + 2} tokens, more than max_length {max_length}")
    save_bpe(folder, vocab, merges, pad_token="<|endoftext|>", model_max_length=max_length)
    log(f"tokenizer: {len(merges)} merges learned (asked {num_merges}), vocabulary {len(vocab)}")
    return Tokenizer(folder)


def _pretokenized_lengths(captions: Sequence[str], vocab, merges):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        save_bpe(d, vocab, merges, pad_token="<|endoftext|>")
        tok = ClipTokenizer(d)
        return [tok.tokenize_ids(c) for c in set(captions)]


class Tokenizer:
    """CLIP tokenizer over a tokenizer/ folder, with a cache (the world has few distinct captions)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.tok = ClipTokenizer(folder)
        self.vocab_size = len(self.tok.encoder)
        self.cache: Dict[str, List[int]] = {}

    @property
    def max_length(self) -> int:
        return self.tok.model_max_length

    @property
    def eos_id(self) -> int:
        return self.tok.eos_id

    def ids(self, text: str) -> List[int]:
        r = self.cache.get(text)
        if r is None:
            r = self.tok(text)
            self.cache[text] = r
        return r

    def __call__(self, texts: Sequence[str], device=None) -> torch.Tensor:
        return torch.tensor([self.ids(t) for t in texts], dtype=torch.int64, device=device)

    def coverage(self, texts: Sequence[str]) -> float:
        """Mean tokens per word (1.0 = every word a single token)."""
        words = sum(len(t.split()) for t in texts)
        toks = sum(len(self.tok.tokenize_ids(t)) for t in texts)
        return toks / max(1, words)


def build_text_encoder(vocab_size: int, cfg: dict, max_length: int = MAX_LENGTH) -> M.CLIPTextModel:
    return M.CLIPTextModel(
        vocab_size=vocab_size,
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["hidden_size"] * 4,
        max_position_embeddings=max_length,
        hidden_act="quick_gelu",
    )


def init_text_encoder(te: M.CLIPTextModel, seed: int) -> None:
    """CLIP-style init: N(0, 0.02) embeddings and linear weights, zero biases, unit norms."""
    g = torch.Generator().manual_seed(seed)
    for m in te.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        elif isinstance(m, torch.nn.LayerNorm):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
