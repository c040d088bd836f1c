"""Shared helpers for the EmojiWorld trainers: paths, seeding, logging, budgets, learning-rate schedules, EMA.

Every training script imports the reference model definitions from training/reference/models.py (SD's
structure) and the CLIP BPE tools from training/common/clip_bpe.py through the paths set up here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import re
import sys
import time
from typing import Dict, Iterable, Optional

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
for _p in (os.path.join(ROOT, "training", "reference"), os.path.join(ROOT, "training", "common"), HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from hf_configs import DIFFUSERS_VERSION, TRANSFORMERS_VERSION  # noqa: E402,F401  (re-exported)

_T0 = time.time()
_LOG_FILE: Optional[str] = None


def set_log_file(path: Optional[str]) -> None:
    global _LOG_FILE
    _LOG_FILE = path
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def log(*parts) -> None:
    """Print with the elapsed wall-clock time since start; also appended to the log file when one is set."""
    msg = f"[{time.time() - _T0:7.1f}s] " + " ".join(str(p) for p in parts)
    print(msg, flush=True)
    if _LOG_FILE:
        with open(_LOG_FILE, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+|null|true|false)(?:,\s*(?:-?[\d.eE+-]+|null|true|false))*)\s*\]")


def write_json(path: str, obj) -> None:
    """Indented JSON with lists of numbers kept on one line."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------------------
# Devices and precision
# --------------------------------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (H100: fast, no loss scaling needed); a no-op on the CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup_torch(device: torch.device, threads: int) -> None:
    if device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


# --------------------------------------------------------------------------------------------------------------
# Budgets and schedules
# --------------------------------------------------------------------------------------------------------------


class Budget:
    """A training stage runs for `steps` optimiser steps or `seconds` of wall clock, whichever comes first.

    `progress` (0..1) is the larger of the two fractions, so learning-rate schedules anneal properly when the
    clock rather than the step count ends a stage (the CPU runs); on a fast machine the step count ends it and the
    run is reproducible step for step.
    """

    def __init__(self, steps: int, seconds: float, done_steps: int = 0, done_seconds: float = 0.0):
        self.steps = max(1, int(steps))
        self.seconds = max(1e-3, float(seconds))
        self.start = time.time() - done_seconds  # a resumed stage continues its own clock
        self.step = done_steps

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    @property
    def progress(self) -> float:
        return min(1.0, max(self.step / self.steps, self.elapsed / self.seconds))

    def done(self) -> bool:
        return self.step >= self.steps or self.elapsed >= self.seconds

    def tick(self) -> None:
        self.step += 1


class StageCheckpoint:
    """Periodic checkpoints inside a training stage, so that an interrupted run (`--resume`) continues the stage
    where it stopped instead of starting it again. `state()` returns everything the stage needs to go on (weights,
    optimiser, EMA, generators, history); the budget's step count, elapsed time and allotment are added here."""

    def __init__(self, path: Optional[str], every_seconds: float = 300.0):
        self.path = path
        self.every = every_seconds
        self.last = time.time()

    def load(self) -> Optional[dict]:
        if self.path and os.path.exists(self.path):
            s = torch.load(self.path)
            log(f"resuming from {self.path}: step {s['budget']['step']}, {s['budget']['elapsed']:.0f}s done")
            return s
        return None

    def budget(self, resumed: Optional[dict], steps: int, seconds: float) -> Budget:
        if resumed is None:
            return Budget(steps, seconds)
        b = resumed["budget"]
        return Budget(b["steps"], b["seconds"], b["step"], b["elapsed"])

    def maybe_save(self, budget: Budget, state, force: bool = False) -> None:
        if not self.path or (not force and time.time() - self.last < self.every):
            return
        s = state()
        s["budget"] = {"step": budget.step, "elapsed": budget.elapsed, "steps": budget.steps,
                       "seconds": budget.seconds}
        torch.save(s, self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)
        self.last = time.time()

    def remove(self) -> None:
        if self.path and os.path.exists(self.path):
            os.remove(self.path)


def lr_at(progress: float, base: float, warmup: float = 0.03, final: float = 0.1) -> float:
    """Linear warm-up over the first `warmup` of the run, then cosine decay to `final`·base."""
    if progress < warmup:
        return base * max(progress / warmup, 0.02)
    p = (progress - warmup) / max(1e-8, 1 - warmup)
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


class EMA:
    """Exponential moving average of a module's parameters (buffers copied), with diffusers-style warm-up:
    decay = min(max_decay, (1 + step) / (10 + step))."""

    def __init__(self, module: nn.Module, max_decay: float):
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.max_decay = max_decay
        self.step = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.step += 1
        d = min(self.max_decay, (1 + self.step) / (10 + self.step))
        for pe, p in zip(self.module.parameters(), module.parameters()):
            pe.mul_(d).add_(p.detach().to(pe.dtype), alpha=1 - d)
        for be, b in zip(self.module.buffers(), module.buffers()):
            be.copy_(b)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1] ([B, C, H, W] -> [B])."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def batches(n: int, size: int) -> Iterable[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def state_dict_cpu(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
