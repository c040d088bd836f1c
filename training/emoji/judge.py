"""The independent judge (models/emoji-judge/): which object classes are in an image, and which background.

A plain supervised classifier, deliberately unlike the small CLIP that edits are optimised against: a VGG/ResNet
style CNN with BatchNorm and ReLU, global average + max pooling, and two heads:

- `object_logits` [B, K]: one independent sigmoid per object class (multi-label; present if sigmoid ≥ 0.5),
- `background_logits` [B, G]: softmax over the backgrounds.

Trained with binary cross-entropy (objects) + cross-entropy (background) on rendered training scenes, random
flips; evaluated on held-out seeds. Input: 128×128 RGB, pixel_values = image·2 − 1 (image in [0, 1]), i.e. SD's
[-1, 1] convention, so EditKit can feed its decoded images directly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from typing import Optional

from common import Budget, autocast, batches, count_params, log, lr_at, set_lr
from data import SceneSet, to_tensor


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, stride=1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = ConvBN(cin, cout, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b(self.a(x)) + self.skip(x))


class Judge(nn.Module):
    def __init__(self, num_objects: int, num_backgrounds: int, widths=(32, 64, 128, 192)):
        super().__init__()
        self.stem = ConvBN(3, widths[0], 1)  # full resolution: objects can be 6 pixels wide
        layers, cin = [], widths[0]
        for w in widths:
            layers.append(Block(cin, w, 2))
            cin = w
        self.body = nn.Sequential(*layers)  # 128 -> 8
        self.dropout = nn.Dropout(0.1)
        self.objects = nn.Linear(2 * cin, num_objects)
        self.background = nn.Linear(2 * cin, num_backgrounds)

    def forward(self, pixel_values: torch.Tensor):
        h = self.body(self.stem(pixel_values))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        pooled = self.dropout(pooled)
        return self.objects(pooled), self.background(pooled)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (5×5, separable) of x [B, C, H, W] with standard deviations sigma [B]."""
    r = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k = k / k.sum(1, keepdim=True)  # [B, 5]
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kc = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kc[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kc[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def train_judge(model: Judge, train: SceneSet, class_names, background_names, cfg: dict, device, seconds: float,
                seed: int, reconstructions: Optional[np.ndarray] = None) -> dict:
    """The judge must judge content, not sharpness: with probability `recon_p` a training image is replaced by
    its VAE reconstruction (`reconstructions[i]` of `train.images[i]`, for the first len(reconstructions)
    images), and with probability `blur_p` it is blurred (σ uniform in [0.3, blur_max]), so that blurry or
    reconstructed edits of the right content are still recognised."""
    model.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    yo = torch.from_numpy(train.object_targets(class_names))
    yb = torch.from_numpy(train.background_targets(background_names))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=5e-4)
    budget = Budget(cfg["steps"], seconds)
    bs = cfg["batch_size"]
    log(f"judge: {count_params(model) / 1e6:.2f}M parameters, batch {bs}, up to {budget.steps} steps / "
        f"{seconds:.0f}s")
    n = len(train)
    hist = []
    while not budget.done():
        set_lr(opt, lr_at(budget.progress, cfg["lr"], warmup=0.03, final=0.02))
        idx = torch.randint(0, n, (bs,), generator=gen)
        imgs = train.images[idx.numpy()].copy()
        if reconstructions is not None:
            use = (torch.rand(bs, generator=gen) < cfg.get("recon_p", 0.4)).numpy() & (idx.numpy() < len(reconstructions))
            imgs[use] = reconstructions[idx.numpy()[use]]
        x = to_tensor(imgs, device)
        flip = (torch.rand(bs, generator=gen) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        blurred = (torch.rand(bs, generator=gen) < cfg.get("blur_p", 0.3)).to(device)
        if bool(blurred.any()):
            sigma = 0.3 + torch.rand(bs, generator=gen).to(device) * (cfg.get("blur_max", 1.2) - 0.3)
            x = torch.where(blurred[:, None, None, None], blur(x, sigma), x)
        with autocast(device):
            lo, lb = model(x)
        lo, lb = lo.float(), lb.float()
        loss = F.binary_cross_entropy_with_logits(lo, yo[idx].to(device)) * lo.shape[1] / 8 + F.cross_entropy(
            lb, yb[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        budget.tick()
        hist.append(float(loss))
        if budget.step % max(1, cfg.get("log_every", 50)) == 0 or budget.step == 1:
            log(f"judge step {budget.step}: loss {np.mean(hist[-50:]):.3f} ({budget.elapsed:.0f}s)")
    model.eval()
    return {"steps": budget.step, "seconds": round(budget.elapsed, 1), "batch_size": bs,
            "final_train_loss": float(np.mean(hist[-50:]))}


@torch.no_grad()
def judge_predict(model: Judge, x: torch.Tensor, bs: int = 128):
    """x: [N, 3, H, W] in [-1, 1] -> (object probabilities [N, K], background index [N])."""
    model.eval()
    po, pb = [], []
    for s in batches(x.shape[0], bs):
        lo, lb = model(x[s])
        po.append(torch.sigmoid(lo.float()).cpu())
        pb.append(lb.float().argmax(1).cpu())
    return torch.cat(po), torch.cat(pb)


def score(prob: torch.Tensor, bg_pred: torch.Tensor, want_objects: np.ndarray, want_bg: np.ndarray,
          threshold: float = 0.5) -> dict:
    """Judge verdicts against the requested/true labels.

    all_objects_found: every wanted object class predicted present (the text-to-image target's criterion);
    exact_set: predicted set == wanted set; object_recall/precision over individual class decisions."""
    pred = (prob >= threshold).numpy()
    want = want_objects >= 0.5
    found_all = np.all(pred | ~want, axis=1)
    exact = np.all(pred == want, axis=1)
    tp = (pred & want).sum()
    return {
        "all_objects_found": float(found_all.mean()),
        "exact_object_set": float(exact.mean()),
        "object_recall": float(tp / max(1, want.sum())),
        "object_precision": float(tp / max(1, pred.sum())),
        "background_accuracy": float((bg_pred.numpy() == want_bg).mean()),
        "images": int(len(want_bg)),
    }


@torch.no_grad()
def evaluate_judge(model: Judge, held: SceneSet, class_names, background_names, device,
                   images: Optional[np.ndarray] = None) -> dict:
    """Scores on held-out renders, or on other images of the same scenes (`images`: e.g. VAE reconstructions)."""
    x = to_tensor(held.images if images is None else images, device)
    prob, bg = judge_predict(model, x)
    return score(prob, bg, held.object_targets(class_names), held.background_targets(background_names))
