"""The conditional UNet (training/reference/models.py's UNet2DConditionModel: SD's structure) and the latent
diffusion training loop, which trains the UNet jointly with the LDM's text encoder.

Objective (DDPM, noise prediction, as SD): latents z = posterior sample of the frozen VAE × scaling_factor;
t ~ U{0..999}; x_t = √ᾱ_t z + √(1 − ᾱ_t) ε with SD's scaled_linear betas (β from 0.00085 to 0.012 over 1000
steps, linear in √β); loss = ‖ε − ε_θ(x_t, t, c)‖². Classifier-free guidance training: 10% of captions are
replaced by the empty string "" (what EditKit encodes for the unconditional branch). A random caption template
is drawn per sample. EMA of the UNet and text-encoder weights (one average over both, since they are trained
together) is what gets exported.

The text encoder starts from the small CLIP's text tower (contrastively trained, clip.py) and is fine-tuned with
a lower learning rate (`text_lr_scale`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import EMA, Budget, StageCheckpoint, autocast, count_params, log, lr_at, set_lr
import models as M  # training/reference/models.py

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012

SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.29.2",
    "beta_end": BETA_END,
    "beta_schedule": "scaled_linear",
    "beta_start": BETA_START,
    "clip_sample": False,
    "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, NUM_TRAIN_TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def build_unet(cfg: dict, cross_attention_dim: int, latent_channels: int = 4,
               sample_size: int = 32) -> M.UNet2DConditionModel:
    """cfg: channels (per level), attention (bool per level), layers_per_block, head_dim, norm_groups."""
    att = cfg["attention"]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in att)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in att[::-1])
    return M.UNet2DConditionModel(
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(cfg["channels"]),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=cfg["layers_per_block"],
        norm_num_groups=cfg["norm_groups"],
        attention_head_dim=cfg["head_dim"],
        cross_attention_dim=cross_attention_dim,
        use_linear_projection=False,
        sample_size=sample_size,
    )


# --------------------------------------------------------------------------------------------------------------
# Fast attention for training on GPUs (export always traces the reference math)
# --------------------------------------------------------------------------------------------------------------

_REFERENCE_ATTENTION = M.Attention.forward


def _sdpa_forward(self, x, context=None):
    if torch.jit.is_tracing() or not hasattr(F, "scaled_dot_product_attention"):
        return _REFERENCE_ATTENTION(self, x, context)
    ctx = x if context is None else context
    b, n, d = x.shape
    m = ctx.shape[1]
    h, hd = self.heads, self.head_dim
    q = self.to_q(x).reshape(b, n, h, hd).transpose(1, 2)
    k = self.to_k(ctx).reshape(b, m, h, hd).transpose(1, 2)
    v = self.to_v(ctx).reshape(b, m, h, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v)
    return self.to_out(o.transpose(1, 2).reshape(b, n, d))


def fast_attention(enable: bool) -> None:
    """Swap the reference attention for torch's fused kernel (same maths) when available (torch >= 2.0)."""
    M.Attention.forward = _sdpa_forward if enable and hasattr(F, "scaled_dot_product_attention") else \
        _REFERENCE_ATTENTION


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


class LDM(nn.Module):
    """UNet + text encoder, trained (and averaged) together."""

    def __init__(self, unet: M.UNet2DConditionModel, text_encoder: M.CLIPTextModel):
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder

    def forward(self, x_t, t, ids):
        hidden, _ = self.text_encoder(ids)
        return self.unet(x_t, t, hidden)


def tokenize_captions(tok, captions, device) -> torch.Tensor:
    """[N, T, max_length] ids: every caption template of every scene (templates repeated to a common T)."""
    t_max = max(len(c) for c in captions)
    rows = []
    for caps in captions:
        caps = list(caps) + [caps[k % len(caps)] for k in range(t_max - len(caps))]
        rows.append([tok.ids(c) for c in caps])
    return torch.tensor(rows, dtype=torch.int64, device=device)


def train_ldm(ldm: LDM, posteriors: torch.Tensor, captions, tok, cfg: dict, device: torch.device, seconds: float,
              seed: int, scaling: float, posteriors_flipped: Optional[torch.Tensor] = None,
              ckpt: Optional[StageCheckpoint] = None) -> tuple:
    """posteriors: [N, 2C, h, w] VAE posterior (mean || logvar) of the training images (CPU float32).
    min_snr_gamma (cfg): Min-SNR loss weighting (Hang et al. 2023), weight min(SNR_t, γ)/SNR_t for ε-prediction,
    which stops the many easy low-noise steps from dominating the gradient. Returns (stats, ema LDM)."""
    ldm.to(device).train()
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed + 1)
    abar = alphas_cumprod().to(device=device, dtype=torch.float32)
    post = posteriors.to(device)
    post_f = posteriors_flipped.to(device) if posteriors_flipped is not None else None
    ids_all = tokenize_captions(tok, captions, device)
    empty = torch.tensor(tok.ids(""), dtype=torch.int64, device=device)
    lr = cfg["lr"]
    groups = [
        {"params": list(ldm.unet.parameters()), "lr_scale": 1.0},
        {"params": list(ldm.text_encoder.parameters()), "lr_scale": cfg.get("text_lr_scale", 0.5)},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), weight_decay=cfg.get("weight_decay", 0.01))
    ema = EMA(ldm, cfg["ema_decay"])
    ckpt = ckpt or StageCheckpoint(None)
    resumed = ckpt.load()
    budget = ckpt.budget(resumed, cfg["steps"], seconds)
    hist = []
    if resumed is not None:
        ldm.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["opt"])
        ema.module.load_state_dict(resumed["ema"])
        ema.step = resumed["ema_step"]
        gen.set_state(resumed["gen"])
        hist = resumed["hist"]
    gamma = cfg.get("min_snr_gamma")
    snr = abar / (1 - abar)
    bs = cfg["batch_size"]
    n, t_max = ids_all.shape[0], ids_all.shape[1]
    log(f"LDM: UNet {count_params(ldm.unet) / 1e6:.2f}M + text encoder {count_params(ldm.text_encoder) / 1e6:.2f}M "
        f"parameters; {n} training latents{' (+ flips)' if post_f is not None else ''}, batch {bs}, "
        f"up to {budget.steps} steps / {budget.seconds:.0f}s, EMA {cfg['ema_decay']}, "
        f"min-SNR γ {gamma}, {ids_all.shape[-1]} tokens")
    while not budget.done():
        set_lr(opt, lr_at(budget.progress, lr, warmup=cfg.get("warmup", 0.03), final=cfg.get("final_lr", 0.1)))
        idx = torch.randint(0, n, (bs,), device=device, generator=gen)
        p = post[idx]
        if post_f is not None:
            flip = torch.rand(bs, device=device, generator=gen) < 0.5
            p = torch.where(flip[:, None, None, None], post_f[idx], p)
        elif cfg.get("flip_latents"):
            # Mirroring the latent grid stands in for encoding mirrored images (the VAE is convolutional, and
            # captions never say left or right).
            flip = torch.rand(bs, device=device, generator=gen) < 0.5
            p = torch.where(flip[:, None, None, None], p.flip(-1), p)
        mean, logvar = p.chunk(2, dim=1)
        z = (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.randn(mean.shape, device=device, generator=gen))
        z = z * scaling
        tmpl = torch.randint(0, t_max, (bs,), device=device, generator=gen)
        ids = ids_all[idx, tmpl]
        drop = torch.rand(bs, device=device, generator=gen) < cfg.get("cfg_dropout", 0.1)
        ids = torch.where(drop[:, None], empty[None, :], ids)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (bs,), device=device, generator=gen)
        noise = torch.randn(z.shape, device=device, generator=gen)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * z + (1 - a).sqrt() * noise
        with autocast(device):
            pred = ldm(x_t, t, ids)
        per_sample = ((pred.float() - noise) ** 2).mean(dim=(1, 2, 3))
        if gamma:
            weight = snr[t].clamp(max=gamma) / snr[t]
            loss = (per_sample * weight).mean()
        else:
            loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(ldm.parameters(), 1.0)
        opt.step()
        ema.update(ldm)
        budget.tick()
        hist.append(float(per_sample.mean()))  # plain ε-MSE, comparable across weightings
        if budget.step % max(1, cfg.get("log_every", 50)) == 0 or budget.step == 1:
            k = min(100, len(hist))
            log(f"LDM step {budget.step}: ε-MSE {np.mean(hist[-k:]):.4f} weighted loss {float(loss):.4f} "
                f"grad-norm {float(gn):.2f} lr {opt.param_groups[0]['lr']:.2e} ({budget.elapsed:.0f}s, "
                f"{budget.step * bs / max(1e-6, budget.elapsed):.1f} samples/s)")
        ckpt.maybe_save(budget, lambda: {"model": ldm.state_dict(), "opt": opt.state_dict(),
                                         "ema": ema.module.state_dict(), "ema_step": ema.step,
                                         "gen": gen.get_state(), "hist": hist})
    ldm.eval()
    stats = {"steps": budget.step, "seconds": round(budget.elapsed, 1), "batch_size": bs,
             "samples_seen": budget.step * bs, "final_train_eps_mse": float(np.mean(hist[-100:])),
             "min_snr_gamma": gamma, "tokens": int(ids_all.shape[-1]),
             "ema_decay": cfg["ema_decay"], "ema_updates": ema.step}
    return stats, ema.module
