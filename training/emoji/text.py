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

MAX_LENGTH = 77


def build_tokenizer(captions: Sequence[str], num_merges: int, folder: str) -> "Tokenizer":
    vocab, merges = learn_clip_bpe(list(captions), num_merges)
    save_bpe(folder, vocab, merges, pad_token="<|endoftext|>")
    log(f"tokenizer: {len(merges)} merges learned (asked {num_merges}), vocabulary {len(vocab)}")
    return Tokenizer(folder)


class Tokenizer:
    """CLIP tokenizer over a tokenizer/ folder, with a cache (the world has few distinct captions)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.tok = ClipTokenizer(folder)
        self.vocab_size = len(self.tok.encoder)
        self.cache: Dict[str, List[int]] = {}

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


def build_text_encoder(vocab_size: int, cfg: dict) -> M.CLIPTextModel:
    return M.CLIPTextModel(
        vocab_size=vocab_size,
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["hidden_size"] * 4,
        max_position_embeddings=MAX_LENGTH,
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
