"""PyTorch reference implementations of EditKit's pipelines (docs/pipelines.md), for parity fixtures.

The models are the PyTorch modules of `models.py` (not the ONNX exports); the schedulers are the NumPy reference
in `schedulers.py` (float64 inside; tensors cross the boundary as float32). Everything follows the conventions
document number for number: CFG batch [uncond, cond], `eps = uncond + g · (cond − uncond)`, posterior-mean
encoding, `latents = mean · scaling_factor`, `image = clamp(decode(latents / scaling_factor) / 2 + 0.5, 0, 1)`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

from models import AutoencoderKL, CLIPTextModel, UNet2DConditionModel  # noqa: E402
from clip_bpe import bytes_to_unicode, pretokenize  # noqa: E402  (training/common/clip_bpe.py)

# --------------------------------------------------------------------------------------------------------------
# Minimal CLIP BPE tokenizer (reads the bundle's tokenizer/ folder; pre-tokenisation from clip_bpe, which is
# transformers' CLIPTokenizer without ftfy)
# --------------------------------------------------------------------------------------------------------------


class ClipTokenizer:
    def __init__(self, directory: str):
        with open(os.path.join(directory, "vocab.json"), encoding="utf-8") as f:
            self.encoder: Dict[str, int] = json.load(f)
        with open(os.path.join(directory, "merges.txt"), encoding="utf-8") as f:
            lines = [ln for ln in f.read().split("\n") if ln and not ln.startswith("#version")]
        self.ranks = {tuple(ln.split()): i for i, ln in enumerate(lines)}
        cfg: dict = {}
        p = os.path.join(directory, "tokenizer_config.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                cfg = json.load(f)

        def tok(v, default):
            if v is None:
                return default
            return v["content"] if isinstance(v, dict) else v

        self.bos_token = tok(cfg.get("bos_token"), "<|startoftext|>")
        self.eos_token = tok(cfg.get("eos_token"), "<|endoftext|>")
        self.pad_token = tok(cfg.get("pad_token"), self.eos_token)
        self.model_max_length = int(cfg.get("model_max_length", 77))
        self.byte_encoder = bytes_to_unicode()
        self.cache: Dict[str, List[str]] = {}

    @property
    def bos_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def eos_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def pad_id(self) -> int:
        return self.encoder[self.pad_token]

    def bpe(self, token: str) -> List[str]:
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: List[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def tokenize_ids(self, text: str) -> List[int]:
        ids: List[int] = []
        for m in pretokenize(text):
            enc = "".join(self.byte_encoder[b] for b in m.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(enc))
        return ids

    def __call__(self, text: str) -> List[int]:
        """BOS, ids (truncated), EOS, padded with the pad token to model_max_length."""
        n = self.model_max_length
        ids = [self.bos_id] + self.tokenize_ids(text)[: n - 2] + [self.eos_id]
        return ids + [self.pad_id] * (n - len(ids))


# --------------------------------------------------------------------------------------------------------------
# Bundle of PyTorch modules
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TorchBundle:
    name: str
    tokenizer: ClipTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler_config: dict
    #: how the exported UNet takes its timestep: "int64" (rounded) or "float32"
    timestep_dtype: str = "int64"
    extra: dict = field(default_factory=dict)

    @property
    def scaling_factor(self) -> float:
        return self.vae.scaling_factor

    @property
    def vae_scale_factor(self) -> int:
        return self.vae.downsample_factor

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels


def to_t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)


@torch.no_grad()
def encode_prompt(b: TorchBundle, prompt: str, negative_prompt: Optional[str], guidance_scale: float):
    """Returns (embeddings [B, 77, D] with B = 2 ([uncond, cond]) under guidance else 1, input_ids [B, 77])."""
    texts = [negative_prompt or "", prompt] if guidance_scale > 1 else [prompt]
    ids = torch.tensor([b.tokenizer(t) for t in texts], dtype=torch.int64)
    hidden, _ = b.text_encoder(ids)
    return hidden, ids.numpy()


def _timestep_tensor(b: TorchBundle, t: float, batch: int) -> torch.Tensor:
    if b.timestep_dtype == "int64":
        # Math.round semantics (half up), as EditKit rounds for integer timestep inputs
        return torch.full((batch,), int(math.floor(float(t) + 0.5)), dtype=torch.int64)
    return torch.full((batch,), float(t), dtype=torch.float32)


@torch.no_grad()
def predict_noise(b: TorchBundle, model_input: torch.Tensor, t: float, emb: torch.Tensor, guidance_scale: float):
    if emb.shape[0] == 1:
        return b.unet(model_input, _timestep_tensor(b, t, 1), emb)
    x = torch.cat([model_input, model_input])
    out = b.unet(x, _timestep_tensor(b, t, 2), emb)
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def vae_encode(b: TorchBundle, image: torch.Tensor) -> torch.Tensor:
    """Posterior mean × scaling factor."""
    return b.vae.encode_mean(image) * b.scaling_factor


@torch.no_grad()
def vae_decode(b: TorchBundle, latents: torch.Tensor) -> torch.Tensor:
    return (b.vae.decode(latents / b.scaling_factor) / 2 + 0.5).clamp(0, 1)


def _schedulers():
    import schedulers  # training/reference/schedulers.py (NumPy reference)

    return schedulers


def make_scheduler(b: TorchBundle, override: Optional[str]):
    return _schedulers().from_config(b.scheduler_config, override)


def _step(s, eps: torch.Tensor, t, latents: torch.Tensor, eta: float) -> torch.Tensor:
    prev, _ = s.step(eps.double().numpy(), t, latents.double().numpy(), eta=eta)
    return to_t(prev)


def _scale(s, latents: torch.Tensor, t) -> torch.Tensor:
    return to_t(s.scale_model_input(latents.double().numpy(), t))


def _add_noise(s, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    return to_t(s.add_noise(x0.double().numpy(), noise.double().numpy(), t))


# --------------------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------------------


def _denoise(b, s, latents, timesteps, emb, guidance_scale, eta, after_step=None):
    for i, t in enumerate(timesteps):
        x = _scale(s, latents, t)
        eps = predict_noise(b, x, t, emb, guidance_scale)
        latents = _step(s, eps, t, latents, eta)
        if after_step is not None:
            latents = after_step(i, latents)
    return latents


@torch.no_grad()
def text_to_image(
    b: TorchBundle,
    prompt: str,
    latents: np.ndarray,
    negative_prompt: Optional[str] = None,
    num_inference_steps: int = 10,
    guidance_scale: float = 7.5,
    scheduler: Optional[str] = None,
    eta: float = 0.0,
) -> dict:
    """`latents` are the unscaled initial latents (multiplied by init_noise_sigma here, as diffusers)."""
    s = make_scheduler(b, scheduler)
    emb, ids = encode_prompt(b, prompt, negative_prompt, guidance_scale)
    s.set_timesteps(num_inference_steps)
    x = to_t(latents) * float(s.init_noise_sigma)
    timesteps = list(np.asarray(s.timesteps))
    x = _denoise(b, s, x, timesteps, emb, guidance_scale, eta)
    return dict(latents=to_np(x), image=to_np(vae_decode(b, x)), timesteps=timesteps, input_ids=ids)


def img2img_timesteps(s, n: int, strength: float) -> list:
    init_timestep = min(int(np.floor(n * strength)), n)
    t_start = max(n - init_timestep, 0)
    timesteps = list(np.asarray(s.timesteps)[t_start * s.order :])
    s.set_begin_index(t_start * s.order)
    return timesteps


@torch.no_grad()
def image_to_image(
    b: TorchBundle,
    prompt: str,
    image: np.ndarray,
    noise: np.ndarray,
    strength: float = 0.6,
    negative_prompt: Optional[str] = None,
    num_inference_steps: int = 10,
    guidance_scale: float = 7.5,
    scheduler: Optional[str] = None,
    eta: float = 0.0,
) -> dict:
    s = make_scheduler(b, scheduler)
    emb, ids = encode_prompt(b, prompt, negative_prompt, guidance_scale)
    init_latents = vae_encode(b, to_t(image))
    s.set_timesteps(num_inference_steps)
    timesteps = img2img_timesteps(s, num_inference_steps, strength)
    x = _add_noise(s, init_latents, to_t(noise), timesteps[0])
    x = _denoise(b, s, x, timesteps, emb, guidance_scale, eta)
    return dict(
        latents=to_np(x), image=to_np(vae_decode(b, x)), timesteps=timesteps, input_ids=ids,
        image_latents=to_np(init_latents),
    )


def latent_mask(b: TorchBundle, mask: np.ndarray) -> torch.Tensor:
    """Binarise the image-space mask [1, 1, H, W] at 0.5 and resize to the latent grid (nearest)."""
    m = (to_t(mask) >= 0.5).float()
    h, w = m.shape[-2] // b.vae_scale_factor, m.shape[-1] // b.vae_scale_factor
    return F.interpolate(m, size=(h, w), mode="nearest")


@torch.no_grad()
def inpaint(
    b: TorchBundle,
    prompt: str,
    image: np.ndarray,
    mask: np.ndarray,
    noise: np.ndarray,
    strength: float = 1.0,
    negative_prompt: Optional[str] = None,
    num_inference_steps: int = 10,
    guidance_scale: float = 7.5,
    scheduler: Optional[str] = None,
    eta: float = 0.0,
) -> dict:
    """4-channel UNet: latent blending; 9-channel UNet: [latents, mask, masked-image latents] input."""
    s = make_scheduler(b, scheduler)
    emb, ids = encode_prompt(b, prompt, negative_prompt, guidance_scale)
    img = to_t(image)
    init_latents = vae_encode(b, img)
    m = latent_mask(b, mask)
    nz = to_t(noise)
    s.set_timesteps(num_inference_steps)
    timesteps = img2img_timesteps(s, num_inference_steps, strength)
    if strength >= 1.0:
        x = nz * float(s.init_noise_sigma)
    else:
        x = _add_noise(s, init_latents, nz, timesteps[0])
    in_ch = b.unet.config["in_channels"]
    out = dict(input_ids=ids, image_latents=to_np(init_latents), mask_latent=to_np(m), timesteps=timesteps)
    if in_ch == 2 * b.latent_channels + 1:
        pixel_mask = (to_t(mask) >= 0.5).float()
        masked_image = img * (pixel_mask < 0.5).float()
        masked_latents = vae_encode(b, masked_image)
        out["masked_image_latents"] = to_np(masked_latents)
        for t in timesteps:
            x_in = torch.cat([_scale(s, x, t), m, masked_latents], dim=1)
            eps = predict_noise(b, x_in, t, emb, guidance_scale)
            x = _step(s, eps, t, x, eta)
    else:

        def blend(i, lat):
            if i == len(timesteps) - 1:
                known = init_latents
            else:
                known = _add_noise(s, init_latents, nz, timesteps[i + 1])
            return (1 - m) * known + m * lat

        x = _denoise(b, s, x, timesteps, emb, guidance_scale, eta, after_step=blend)
    out.update(latents=to_np(x), image=to_np(vae_decode(b, x)))
    return out


@torch.no_grad()
def ddim_inversion(
    b: TorchBundle,
    image: np.ndarray,
    prompt: str = "",
    num_inference_steps: int = 10,
    guidance_scale: float = 1.0,
    negative_prompt: Optional[str] = None,
) -> dict:
    """DDIM inversion: every intermediate latent (start included) stacked [steps + 1, 1, C, h, w]."""
    s = _schedulers().DDIMInverse(b.scheduler_config)
    emb, ids = encode_prompt(b, prompt, negative_prompt, guidance_scale)
    x = vae_encode(b, to_t(image))
    s.set_timesteps(num_inference_steps)
    timesteps = list(np.asarray(s.timesteps))
    traj = [to_np(x)]
    for t in timesteps:
        eps = predict_noise(b, _scale(s, x, t), t, emb, guidance_scale)
        x = _step(s, eps, t, x, 0.0)
        traj.append(to_np(x))
    return dict(inverted_latents=np.stack(traj), timesteps=timesteps, input_ids=ids)


@torch.no_grad()
def ddim_reconstruction(
    b: TorchBundle,
    inverted: np.ndarray,
    prompt: str = "",
    num_inference_steps: int = 10,
    guidance_scale: float = 1.0,
    negative_prompt: Optional[str] = None,
) -> dict:
    """The DDIM text-to-image loop from the last inverted latents."""
    return text_to_image(
        b, prompt, inverted, negative_prompt, num_inference_steps, guidance_scale, scheduler="ddim", eta=0.0
    )
