"""Held-out evaluation of the trained models (PyTorch, EditKit's conventions).

Sampling uses the NumPy reference schedulers of training/reference/schedulers.py (the ones EditKit's parity
tests are built on) on batched latents; prompts are encoded as EditKit does (CFG batch [uncond "", cond],
eps = uncond + g·(cond − uncond); latents = posterior mean × scaling_factor; image = decode(latents / scaling)).

Figures (issue 3's targets in brackets):
- VAE reconstruction PSNR on held-out renders [≥ 30 dB]                                  (vae.evaluate_vae)
- judge accuracy on held-out renders                                                      (judge.evaluate_judge)
- small-CLIP held-out retrieval                                                           (clip.evaluate_clip)
- text-to-image: held-out captions → samples → judge: every requested object found [≥ 90%], background correct
  [≥ 90%]
- DDIM inversion (caption as prompt, guidance 1) + DDIM reconstruction PSNR [≥ 27 dB]
- realism: Fréchet distance between small-CLIP image embeddings of samples and of held-out renders, with its
  baseline: the same distance between two disjoint sets of held-out renders of the same sizes.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from common import autocast, batches, log, psnr
from data import SceneSet, to_tensor
import schedulers as S  # training/reference/schedulers.py


def _t(x: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)


@torch.no_grad()
def encode_text(te, tok, prompts, device) -> torch.Tensor:
    hidden, _ = te(tok(list(prompts), device))
    return hidden.float()


@torch.no_grad()
def _eps(unet, x, t: float, cond, uncond, guidance: float, device):
    tt = torch.full((x.shape[0] * (2 if uncond is not None else 1),), int(np.floor(float(t) + 0.5)),
                    dtype=torch.int64, device=device)
    with autocast(device):
        if uncond is None:
            return unet(x, tt, cond).float()
        out = unet(torch.cat([x, x]), tt, torch.cat([uncond, cond])).float()
    u, c = out.chunk(2)
    return u + guidance * (c - u)


@torch.no_grad()
def sample(te, unet, vae, tok, prompts, scheduler_config, scaling, steps, guidance, seed, device, bs=32):
    """Text-to-image with DDIM (eta 0): uint8-like float images in [0, 1], [N, 3, H, W] on the CPU (the latent
    grid is the UNet's sample_size, its channels the UNet's in_channels)."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for s in batches(len(prompts), bs):
        p = list(prompts[s])
        sch = S.from_config(scheduler_config, "ddim")
        sch.set_timesteps(steps)
        cond = encode_text(te, tok, p, device)
        uncond = encode_text(te, tok, [""] * len(p), device) if guidance > 1 else None
        c, size = unet.config["in_channels"], unet.config["sample_size"]
        x = torch.randn(len(p), c, size, size, generator=g).to(device) * float(sch.init_noise_sigma)
        for t in np.asarray(sch.timesteps):
            xin = _t(sch.scale_model_input(x.double().cpu().numpy(), t), device)
            eps = _eps(unet, xin, t, cond, uncond, guidance, device)
            prev, _ = sch.step(eps.double().cpu().numpy(), t, x.double().cpu().numpy(), eta=0.0)
            x = _t(prev, device)
        img = vae.decode(x / scaling).float()
        out.append(((img + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def invert_reconstruct(te, unet, vae, tok, images: np.ndarray, prompts, scheduler_config, scaling, steps, device,
                       bs=16) -> dict:
    """DDIM inversion (prompt = the scene's caption, guidance 1) then DDIM sampling back; PSNR vs the input, and
    the VAE-only PSNR of the same images for reference."""
    vals, vae_vals = [], []
    for s in batches(len(images), bs):
        x_img = to_tensor(images[s], device)
        cond = encode_text(te, tok, list(prompts[s]), device)
        params = vae.encode_parameters(x_img).float()
        lat = params[:, : params.shape[1] // 2] * scaling
        inv = S.DDIMInverse(scheduler_config)
        inv.set_timesteps(steps)
        x = lat
        for t in np.asarray(inv.timesteps):
            eps = _eps(unet, _t(inv.scale_model_input(x.double().cpu().numpy(), t), device), t, cond, None, 1.0,
                       device)
            prev, _ = inv.step(eps.double().cpu().numpy(), t, x.double().cpu().numpy(), eta=0.0)
            x = _t(prev, device)
        sch = S.from_config(scheduler_config, "ddim")
        sch.set_timesteps(steps)
        for t in np.asarray(sch.timesteps):
            eps = _eps(unet, _t(sch.scale_model_input(x.double().cpu().numpy(), t), device), t, cond, None, 1.0,
                       device)
            prev, _ = sch.step(eps.double().cpu().numpy(), t, x.double().cpu().numpy(), eta=0.0)
            x = _t(prev, device)
        rec = ((vae.decode(x / scaling).float() + 1) / 2).clamp(0, 1)
        ref = (x_img + 1) / 2
        vals.append(psnr(rec, ref).cpu())
        vae_rec = ((vae.decode(lat / scaling).float() + 1) / 2).clamp(0, 1)
        vae_vals.append(psnr(vae_rec, ref).cpu())
    v, w = torch.cat(vals), torch.cat(vae_vals)
    return {"psnr_mean": float(v.mean()), "psnr_median": float(v.median()), "vae_only_psnr_mean": float(w.mean()),
            "images": int(len(v)), "steps": steps, "guidance": 1.0}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, D] and b [M, D] (FID's formula)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # sqrtm(s1 s2) via eigen-decomposition of s1^½ s2 s1^½ (symmetric PSD)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


@torch.no_grad()
def text_to_image_eval(te, unet, vae, tok, judge, clip, held: SceneSet, reference: SceneSet, class_names,
                       background_names, scheduler_config, scaling, cfg, device, seed) -> dict:
    """Samples one image per held-out caption and lets the judge check it; Fréchet distance on CLIP features."""
    from clip import image_embeds
    from judge import judge_predict, score

    t = time.time()
    n = min(cfg["t2i_samples"], len(held))
    prompts = held.caption[:n]
    imgs = sample(te, unet, vae, tok, prompts, scheduler_config, scaling, cfg["t2i_steps"], cfg["guidance"], seed,
                  device, bs=cfg.get("eval_batch", 32))
    prob, bg = judge_predict(judge, (imgs * 2 - 1).to(device))
    sub = held.subset(np.arange(n))
    r = score(prob, bg, sub.object_targets(class_names), sub.background_targets(background_names))
    r.update({"steps": cfg["t2i_steps"], "guidance": cfg["guidance"], "scheduler": "ddim", "seconds": 0.0})
    # Fréchet distance on the small CLIP's image embeddings
    u8 = (imgs.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    fake = image_embeds(clip, u8, device).numpy()
    real_a = image_embeds(clip, reference.images, device).numpy()
    real_b = image_embeds(clip, held.images[n:n + n] if len(held) >= 2 * n else held.images[-n:], device).numpy()
    r["frechet_clip"] = frechet_distance(fake, real_a)
    r["frechet_clip_baseline_real_vs_real"] = frechet_distance(real_b, real_a)
    r["frechet_sizes"] = {"samples": int(len(fake)), "reference": int(len(real_a)), "baseline": int(len(real_b))}
    r["seconds"] = round(time.time() - t, 1)
    return r, imgs


def save_grid(imgs: torch.Tensor, path: str, cols: int = 8, captions=None) -> None:
    """A PNG contact sheet (no captions drawn; they go next to it as .txt)."""
    import zlib
    import struct

    n = imgs.shape[0]
    rows = (n + cols - 1) // cols
    h, w = imgs.shape[2], imgs.shape[3]
    sheet = np.full((rows * (h + 2), cols * (w + 2), 3), 255, dtype=np.uint8)
    arr = (imgs.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * (h + 2) + 1: r * (h + 2) + 1 + h, c * (w + 2) + 1: c * (w + 2) + 1 + w] = arr[i]
    raw = b"".join(b"\x00" + sheet[y].tobytes() for y in range(sheet.shape[0]))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", sheet.shape[1], sheet.shape[0], 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
    if captions is not None:
        with open(path[:-4] + ".txt", "w", encoding="utf-8") as f:
            f.write("\n".join(f"{i}: {c}" for i, c in enumerate(captions)) + "\n")
