"""The KL autoencoder (SD's VAE design, training/reference/models.py AutoencoderKL) for 128×128 EmojiWorld images.

block_out_channels has three entries, so the downsampling factor is 4 and a 128×128 image maps to a 32×32×4
latent (DiffEdit's mask resolution). Training objective: L1 + MSE reconstruction on the decoded posterior sample
plus a KL term with SD's tiny weight (1e-6), which keeps the latent space smooth without blurring. No GAN or
perceptual loss: EmojiWorld's flat artwork and procedural textures need neither, and the quality target is PSNR.
Optionally trains on random crops (the network is convolutional apart from the mid-block attention), which the
CPU preset uses to make each step 4× cheaper.

After training, `scaling_factor` = 1 / std of the posterior means over training images (SD's recipe), written to
the VAE configs so EditKit scales latents to unit variance for the UNet.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from typing import Optional

from common import Budget, StageCheckpoint, autocast, batches, count_params, log, lr_at, psnr, set_lr
from data import SceneSet, to_tensor
import models as M  # training/reference/models.py


def build_vae(cfg: dict) -> M.AutoencoderKL:
    return M.AutoencoderKL(
        block_out_channels=tuple(cfg["channels"]),
        layers_per_block=cfg["layers_per_block"],
        latent_channels=cfg.get("latent_channels", 4),
        norm_num_groups=cfg["norm_groups"],
        sample_size=cfg.get("image_size", 128),
    )


def posterior(vae: M.AutoencoderKL, x: torch.Tensor):
    params = vae.encode_parameters(x)
    mean, logvar = params.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def augment(x: torch.Tensor, gen: torch.Generator, crop: int) -> torch.Tensor:
    """Random horizontal flips (label-preserving in EmojiWorld: captions never say left/right) and crops."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    if crop and crop < x.shape[-1]:
        # one offset per batch, multiple of 4 to keep the latent grid aligned
        i = int(torch.randint(0, (x.shape[-2] - crop) // 4 + 1, (1,), generator=gen)) * 4
        j = int(torch.randint(0, (x.shape[-1] - crop) // 4 + 1, (1,), generator=gen)) * 4
        x = x[..., i : i + crop, j : j + crop]
    return x


def train_vae(vae: M.AutoencoderKL, train: SceneSet, cfg: dict, device: torch.device, seconds: float,
              seed: int, ckpt: Optional[StageCheckpoint] = None) -> dict:
    """crop: train on crop×crop windows (about 4× more steps per second at half the side) for the first
    `crop_until` of the run, then on whole images, so that normalisation and mid-block attention statistics match
    what the VAE sees in use (crops alone leave a global colour shift and banding on flat backgrounds)."""
    vae.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    ckpt = ckpt or StageCheckpoint(None)
    resumed = ckpt.load()
    budget = ckpt.budget(resumed, cfg["steps"], seconds)
    stats = {"loss": [], "psnr": []}
    if resumed is not None:
        vae.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["opt"])
        gen.set_state(resumed["gen"])
        stats = resumed["stats"]
    bs, crop, klw = cfg["batch_size"], cfg.get("crop", 0), cfg.get("kl_weight", 1e-6)
    crop_until = cfg.get("crop_until", 1.0)
    full_bs = cfg.get("full_batch_size", bs)
    log(f"VAE: {count_params(vae) / 1e6:.2f}M parameters, {cfg.get('latent_channels', 4)} latent channels, "
        f"batch {bs}, crop {crop or 'none'}{f' until {crop_until:.0%}, then whole images (batch {full_bs})' if crop and crop_until < 1 else ''}, "
        f"up to {budget.steps} steps / {budget.seconds:.0f}s")
    n = len(train)
    while not budget.done():
        set_lr(opt, lr_at(budget.progress, cfg["lr"], warmup=0.02))
        cropping = crop and budget.progress < crop_until
        b = bs if cropping else full_bs
        idx = torch.randint(0, n, (b,), generator=gen).numpy()
        x = to_tensor(train.images[idx], device)
        x = augment(x, gen, crop if cropping else 0)
        with autocast(device):
            mean, logvar = posterior(vae, x)
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen).to(device)
            rec = vae.decode(z)
        rec = rec.float()
        mean, logvar = mean.float(), logvar.float()
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        loss = l1 + mse + klw * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        budget.tick()
        stats["loss"].append(float(loss))
        stats["psnr"].append(float(psnr((rec.detach() + 1) / 2, (x + 1) / 2).mean()))
        if budget.step % max(1, cfg.get("log_every", 50)) == 0 or budget.step == 1:
            k = min(len(stats["loss"]), 50)
            log(f"VAE step {budget.step}: loss {np.mean(stats['loss'][-k:]):.4f} "
                f"train PSNR {np.mean(stats['psnr'][-k:]):.2f} dB{' (crops)' if cropping else ''} kl {float(kl):.1f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({budget.elapsed:.0f}s)")
        ckpt.maybe_save(budget, lambda: {"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                         "stats": stats})
    vae.eval()
    return {"steps": budget.step, "seconds": round(budget.elapsed, 1), "batch_size": bs, "crop": crop,
            "crop_until": crop_until if crop else None, "full_batch_size": full_bs,
            "final_train_psnr": float(np.mean(stats["psnr"][-50:]))}


@torch.no_grad()
def encode_means(vae: M.AutoencoderKL, images: np.ndarray, device: torch.device, bs: int = 64,
                 flip: bool = False) -> torch.Tensor:
    """Posterior means and log-variances, [N, 8, h, w] float32 on the CPU."""
    vae.eval()
    out = []
    for s in batches(len(images), bs):
        x = to_tensor(images[s], device)
        if flip:
            x = x.flip(-1)
        with autocast(device):
            p = vae.encode_parameters(x)
        out.append(p.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def scaling_factor(vae: M.AutoencoderKL, images: np.ndarray, device: torch.device) -> float:
    params = encode_means(vae, images, device)
    return float(1.0 / params[:, : params.shape[1] // 2].std())


@torch.no_grad()
def reconstruct(vae: M.AutoencoderKL, images: np.ndarray, device: torch.device, bs: int = 64) -> np.ndarray:
    """uint8 [N, H, W, 3] -> their reconstructions through the posterior mean, uint8 (judge augmentation)."""
    vae.eval()
    out = []
    for s in batches(len(images), bs):
        rec = vae.decode(posterior(vae, to_tensor(images[s], device))[0]).float()
        out.append(((rec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def evaluate_vae(vae: M.AutoencoderKL, images: np.ndarray, device: torch.device, bs: int = 32) -> dict:
    """Reconstruction PSNR (dB) of whole images through the posterior mean, as EditKit encodes."""
    vae.eval()
    vals = []
    t = time.time()
    for s in batches(len(images), bs):
        x = to_tensor(images[s], device)
        rec = vae.decode(posterior(vae, x)[0]).float()
        vals.append(psnr(((rec + 1) / 2).clamp(0, 1), (x + 1) / 2).cpu())
    v = torch.cat(vals)
    return {"psnr_mean": float(v.mean()), "psnr_median": float(v.median()), "psnr_min": float(v.min()),
            "images": int(len(v)), "seconds": round(time.time() - t, 1)}
