"""What the CLIP experiments (robust_clip.py, pair_clip.py) share: load the CLIP that train_all.py trained, and
export a fine-tuned variant as a CLIP folder with its training recorded in config.json."""

from __future__ import annotations

import json
import os

import torch

from clip import SmallCLIP
from export import export_clip
from text import Tokenizer
from train_all import PRESETS


def load_trained_clip(work: str, preset: str) -> tuple[dict, Tokenizer, SmallCLIP]:
    """The preset, the tokenizer and the CLIP (eval mode) from train_all.py's work folder (clip.pt, tokenizer/)."""
    P = PRESETS[preset]
    tok = Tokenizer(os.path.join(work, "tokenizer"))
    clip = SmallCLIP(tok.vocab_size, {**P["clip"], "max_length": P.get("max_length", 77)})
    clip.load_state_dict(torch.load(os.path.join(work, "clip.pt"), map_location="cpu")["model"])
    clip.eval()
    return P, tok, clip


def export_clip_variant(out: str, tok: Tokenizer, clip: SmallCLIP, P: dict, name: str, training: dict) -> dict:
    """export_clip into `out`, then name the model and record how it was trained in its config.json."""
    files = export_clip(out, tok, clip, {}, image_size=P["vae"]["image_size"])
    config_path = os.path.join(out, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["_name_or_path"] = name
    config["training"] = training
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return files
