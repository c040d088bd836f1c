"""A small CLIP for EmojiWorld (models/emoji-clip/), trained contrastively on rendered scenes and their captions.

- Image tower: a small residual CNN (GroupNorm + SiLU, stride-2 stages 64→32→16→8 on a 128×128 input), global
  average pooling, then a linear projection to `projection_dim`.
- Text tower: training/reference/models.py's CLIPTextModel (same BPE tokenizer as the LDM) and a bias-free
  linear projection of the pooled (EOS) state, as in CLIP.
- Loss: CLIP's symmetric InfoNCE with a learned temperature. Scenes whose canonical captions are equal count as
  positives of each other (soft targets), so in-batch duplicates are not pushed apart. A random caption template
  is drawn per sample (text augmentation) and images are randomly flipped.

Exported (export.py) as image_encoder/model.onnx (`pixel_values` → `image_embeds`) and text_encoder/model.onnx
(`input_ids` → `text_embeds`); embeddings are not normalised (as transformers' CLIP*WithProjection), compare
them with cosine similarity. Pixel normalisation: OpenAI CLIP's mean/std, recorded in config.json.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import Budget, autocast, batches, count_params, log, lr_at, set_lr
from data import SceneSet
import models as M  # training/reference/models.py
from text import Tokenizer, build_text_encoder, init_text_encoder

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_pixels(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised pixel_values [N, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[None, :, None, None]
    return (x - mean) / std


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ImageEncoder(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256), blocks: int = 1, embed_dim: int = 128):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, stride=2, padding=1)  # 128 -> 64
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            layers = []
            if i > 0:
                layers.append(nn.Conv2d(cin, w, 3, stride=2, padding=1))
                cin = w
            for _ in range(blocks):
                layers.append(ResBlock(cin, w))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.GroupNorm(8, cin)
        self.proj = nn.Linear(cin, embed_dim, bias=False)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(pixel_values))
        return F.silu(self.norm(h)).mean(dim=(2, 3))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(pixel_values))


class TextTower(nn.Module):
    def __init__(self, encoder: M.CLIPTextModel, embed_dim: int):
        super().__init__()
        self.encoder = encoder
        self.text_projection = nn.Linear(encoder.config["hidden_size"], embed_dim, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _, pooled = self.encoder(input_ids)
        return self.text_projection(pooled)


class SmallCLIP(nn.Module):
    def __init__(self, vocab_size: int, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.vision = ImageEncoder(tuple(cfg["image_widths"]), cfg.get("image_blocks", 1), cfg["projection_dim"])
        self.text = TextTower(build_text_encoder(vocab_size, cfg["text"], cfg.get("max_length", 77)), cfg["projection_dim"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def _targets(keys) -> torch.Tensor:
    same = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32)
    return same / same.sum(dim=1, keepdim=True)


def train_clip(model: SmallCLIP, train: SceneSet, tok: Tokenizer, cfg: dict, device: torch.device, seconds: float,
               seed: int) -> dict:
    init_text_encoder(model.text.encoder, seed + 1)
    model.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    budget = Budget(cfg["steps"], seconds)
    bs = cfg["batch_size"]
    log(f"CLIP: image {count_params(model.vision) / 1e6:.2f}M + text {count_params(model.text) / 1e6:.2f}M "
        f"parameters, batch {bs}, up to {budget.steps} steps / {seconds:.0f}s")
    n = len(train)
    hist = []
    while not budget.done():
        set_lr(opt, lr_at(budget.progress, cfg["lr"], warmup=0.05))
        idx = torch.randint(0, n, (bs,), generator=gen).numpy()
        x = clip_pixels(train.images[idx], device)
        flip = (torch.rand(bs, generator=gen) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        texts = [train.captions[i][rng.integers(len(train.captions[i]))] for i in idx]
        ids = tok(texts, device)
        target = _targets([train.captions[i][0] for i in idx]).to(device)
        with autocast(device):
            ie = model.vision(x)
            te = model.text(ids)
        ie = F.normalize(ie.float(), dim=-1)
        te = F.normalize(te.float(), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * ie @ te.t()
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(logits.t(), 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        budget.tick()
        acc = float((logits.argmax(1) == torch.arange(bs, device=device)).float().mean())
        hist.append((float(loss), acc))
        if budget.step % max(1, cfg.get("log_every", 50)) == 0 or budget.step == 1:
            k = min(50, len(hist))
            log(f"CLIP step {budget.step}: loss {np.mean([h[0] for h in hist[-k:]]):.3f} "
                f"in-batch top-1 {np.mean([h[1] for h in hist[-k:]]):.2f} "
                f"T {1 / float(model.logit_scale.exp()):.3f} ({budget.elapsed:.0f}s)")
    model.eval()
    return {"steps": budget.step, "seconds": round(budget.elapsed, 1), "batch_size": bs,
            "final_train_loss": float(np.mean([h[0] for h in hist[-50:]]))}


@torch.no_grad()
def image_embeds(model: SmallCLIP, images: np.ndarray, device, bs: int = 128) -> torch.Tensor:
    out = []
    for s in batches(len(images), bs):
        out.append(model.vision(clip_pixels(images[s], device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def text_embeds(model: SmallCLIP, tok: Tokenizer, texts, device, bs: int = 256) -> torch.Tensor:
    out = []
    for s in batches(len(texts), bs):
        out.append(model.text(tok(texts[s], device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def evaluate_clip(model: SmallCLIP, tok: Tokenizer, held: SceneSet, device, group: int = 64) -> dict:
    """Held-out retrieval: image→text and text→image top-1 within groups of `group` scenes (chance 1/group);
    a retrieval counts as correct when the retrieved caption (or image's caption) equals the true one."""
    model.eval()
    ie = F.normalize(image_embeds(model, held.images, device), dim=-1)
    te = F.normalize(text_embeds(model, tok, list(held.caption), device), dim=-1)
    i2t, t2i, total = 0, 0, 0
    for s in batches(len(held), group):
        sim = ie[s] @ te[s].t()
        caps = held.caption[s]
        i2t += sum(caps[j] == caps[int(k)] for j, k in enumerate(sim.argmax(1)))
        t2i += sum(caps[j] == caps[int(k)] for j, k in enumerate(sim.argmax(0)))
        total += sim.shape[0]
    return {"image_to_text_top1": i2t / total, "text_to_image_top1": t2i / total, "group": group,
            "chance": 1 / group, "images": total}
