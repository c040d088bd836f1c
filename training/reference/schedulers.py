"""Float64 NumPy reference schedulers for EditKit's parity fixtures.

Written from the published update rules, not ported from diffusers' code:

* DDIM: Song et al., "Denoising Diffusion Implicit Models", eq. (12) with sigma_t(eta) of eq. (16).
* DDIM inversion: eq. (12) read from the lower noise level to the higher one (eta = 0).
* DPM-Solver++(2M): Lu et al., "DPM-Solver++", Algorithm 2 (multistep second order, data prediction), in the
  VP parameterisation alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), lambda_t = log(alpha_t / sigma_t).
* Euler: Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", Algorithm 2 with
  S_churn = 0, in sigma-space x = x0 + sigma * eps with sigma = sqrt((1 - abar) / abar).

The configuration semantics (defaults per class, beta schedules, timestep spacing, steps_offset,
set_alpha_to_one, final sigma, when the multistep solver drops to first order, step/begin indices for
img2img) follow diffusers' documented behaviour, so that a scheduler built here from a
``scheduler_config.json`` produces the same timesteps and, up to float32 rounding, the same samples as
diffusers and as EditKit's TypeScript schedulers.

Arrays are numpy float64. torch tensors are accepted; when the sample passed in is a torch tensor the
results are returned as torch tensors of the sample's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["DDIM", "DDIMInverse", "DPMSolverPP2M", "EulerDiscrete", "from_config", "alphas_cumprod_for"]

_NOISE_SCHEDULE_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "rescale_betas_zero_snr": False,
}

# Defaults of diffusers' __init__ for each class (what from_config falls back to for keys a file leaves out).
DEFAULTS: dict[str, dict[str, Any]] = {
    "ddim": {
        **_NOISE_SCHEDULE_DEFAULTS,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
    },
    "dpm++2m": {
        **_NOISE_SCHEDULE_DEFAULTS,
        "prediction_type": "epsilon",
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf,
    },
    "euler": {
        **_NOISE_SCHEDULE_DEFAULTS,
        "prediction_type": "epsilon",
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "interpolation_type": "linear",
        "final_sigmas_type": "zero",
    },
}
DEFAULTS["ddim-inverse"] = dict(DEFAULTS["ddim"])

_IMPLEMENTED = {
    "DDIMScheduler": "ddim",
    "DDIMInverseScheduler": "ddim-inverse",
    "DPMSolverMultistepScheduler": "dpm++2m",
    "EulerDiscreteScheduler": "euler",
}
# Classes whose configs carry the same discrete beta schedule, so DDIM can stand in for them.
_DDIM_STAND_INS = {
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "DDPMScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DPMSolverSinglestepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverMultistepInverseScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
}


def _resolve(config: dict, kind: str) -> dict:
    """The config's own values for the keys `kind` knows, the class defaults for the rest."""
    defaulted = set(config.get("_use_default_values") or [])
    given = {k: v for k, v in config.items() if not k.startswith("_") and v is not None and k not in defaulted}
    if given.get("prediction_type") == "original_sample":
        given["prediction_type"] = "sample"
    resolved = {k: given.get(k, v) for k, v in DEFAULTS[kind].items()}
    for key in ("beta_schedule", "prediction_type", "timestep_spacing"):
        allowed = {
            "beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
            "prediction_type": ("epsilon", "v_prediction", "sample"),
            "timestep_spacing": ("linspace", "leading", "trailing"),
        }[key]
        if resolved[key] not in allowed:
            raise ValueError(f"{key}={resolved[key]!r} is not one of {allowed}")
    if kind == "ddim" and given.get("thresholding"):
        raise ValueError("thresholding=True is not supported")
    if kind == "dpm++2m":
        if resolved["algorithm_type"] == "deis":
            resolved["algorithm_type"] = "dpmsolver++"
        if resolved["solver_type"] in ("logrho", "bh1", "bh2"):
            resolved["solver_type"] = "midpoint"
        if resolved["algorithm_type"] != "dpmsolver++":
            raise ValueError(f"algorithm_type={resolved['algorithm_type']!r} is not supported")
        if resolved["solver_order"] not in (1, 2):
            raise ValueError(f"solver_order={resolved['solver_order']!r} is not supported")
        if resolved["solver_type"] not in ("midpoint", "heun"):
            raise ValueError(f"solver_type={resolved['solver_type']!r} is not supported")
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"):
        if kind in ("dpm++2m", "euler") and given.get(key):
            raise ValueError(f"{key}=True is not supported")
    if kind == "euler" and resolved["interpolation_type"] != "linear":
        raise ValueError(f"interpolation_type={resolved['interpolation_type']!r} is not supported")
    return resolved


def alphas_cumprod_for(cfg: dict) -> np.ndarray:
    """abar_t = prod_{s<=t} (1 - beta_s) in float64 for a resolved config."""
    n = cfg["num_train_timesteps"]
    if cfg["trained_betas"] is not None:
        betas = np.asarray(cfg["trained_betas"], dtype=np.float64)
    elif cfg["beta_schedule"] == "linear":
        betas = np.linspace(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = np.linspace(math.sqrt(cfg["beta_start"]), math.sqrt(cfg["beta_end"]), n) ** 2
    else:
        # Nichol & Dhariwal's cosine abar(t), discretised into betas capped at 0.999.
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1.0 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)])
    if cfg["rescale_betas_zero_snr"]:
        # Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1.
        root = np.sqrt(np.cumprod(1.0 - betas))
        first, last = root[0], root[-1]
        root = (root - last) * (first / (first - last))
        abar_values = root**2
        alphas = np.concatenate([abar_values[:1], abar_values[1:] / abar_values[:-1]])
        betas = 1.0 - alphas
    return np.cumprod(1.0 - betas)


def _descending_timesteps(spacing: str, n_train: int, n: int, offset: int) -> np.ndarray:
    """Inference timesteps of Table 2 of Lin et al. (before any rounding of linspace), noisiest first."""
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, n)[::-1].copy()
    if spacing == "leading":
        return (np.arange(n) * (n_train // n))[::-1].astype(np.float64) + offset
    # numpy's arange can come out one element long (e.g. 1000/61); the schedule has n entries.
    return np.round(np.arange(n_train, 0, -n_train / n)[:n]) - 1


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _like(result: np.ndarray, template: Any) -> Any:
    if type(template).__module__.startswith("torch"):
        import torch

        return torch.from_numpy(np.ascontiguousarray(result)).to(dtype=template.dtype, device=template.device)
    return result


def _scalar(t: Any) -> float:
    if hasattr(t, "item"):
        return float(t.item())
    return float(t)


def _split_prediction(prediction_type: str, output: np.ndarray, x: np.ndarray, abar: float):
    """(x0, eps) from the model output, using x = sqrt(abar) x0 + sqrt(1 - abar) eps."""
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if prediction_type == "epsilon":
        return (x - s * output) / a, output
    if prediction_type == "v_prediction":
        # v = a eps - s x0 (Salimans & Ho, "Progressive Distillation", sec. 4).
        return a * x - s * output, a * output + s * x
    return output, (x - a * output) / s


class _Base:
    order = 1
    kind = ""

    def __init__(self, config: dict):
        self.config = _resolve(dict(config), self.kind)
        self.alphas_cumprod = alphas_cumprod_for(self.config)
        self.num_inference_steps: int | None = None
        self.timesteps = np.zeros(0)
        self.notice: str | None = None

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def set_begin_index(self, i: int) -> None:
        """Stateless schedulers ignore it."""

    def scale_model_input(self, x: Any, t: Any) -> Any:
        return x

    def _check_steps(self, n: int) -> None:
        if not 1 <= n <= self.config["num_train_timesteps"]:
            raise ValueError(f"num_inference_steps must be in [1, {self.config['num_train_timesteps']}]")


class DDIM(_Base):
    """Deterministic (eta = 0) or stochastic DDIM; the step from t goes to t - T // n."""

    kind = "ddim"

    def __init__(self, config: dict):
        super().__init__(config)
        self.final_alpha_cumprod = 1.0 if self.config["set_alpha_to_one"] else float(self.alphas_cumprod[0])

    def set_timesteps(self, n: int) -> None:
        self._check_steps(n)
        self.num_inference_steps = n
        c = self.config
        ts = _descending_timesteps(c["timestep_spacing"], c["num_train_timesteps"], n, c["steps_offset"])
        self.timesteps = np.round(ts).astype(np.int64)

    def _abar(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def step(self, model_output, t, x, eta=0.0, variance_noise=None):
        t = int(_scalar(t))
        out, sample = _to_numpy(model_output), _to_numpy(x)
        abar_t = float(self.alphas_cumprod[t])
        abar_prev = self._abar(t - self.config["num_train_timesteps"] // self.num_inference_steps)
        x0, eps = _split_prediction(self.config["prediction_type"], out, sample, abar_t)
        if self.config["clip_sample"]:
            r = self.config["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        # eq. (16): sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t)) * math.sqrt(1 - abar_t / abar_prev)
        # eq. (12): x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z
        prev = math.sqrt(abar_prev) * x0 + math.sqrt(max(0.0, 1 - abar_prev - sigma**2)) * eps
        if sigma > 0:
            if variance_noise is None:
                raise ValueError("a stochastic DDIM step (eta > 0) needs variance_noise")
            prev = prev + sigma * _to_numpy(variance_noise)
        return _like(prev, x), _like(x0, x)

    def add_noise(self, x0, noise, t):
        abar = float(self.alphas_cumprod[int(_scalar(t))])
        return _like(math.sqrt(abar) * _to_numpy(x0) + math.sqrt(1 - abar) * _to_numpy(noise), x0)


class DDIMInverse(DDIM):
    """DDIM inversion: ascending timesteps; the step at t goes from the level of t - T // n up to t."""

    kind = "ddim-inverse"

    def __init__(self, config: dict):
        super().__init__(config)
        self.initial_alpha_cumprod = self.final_alpha_cumprod

    def set_timesteps(self, n: int) -> None:
        super().set_timesteps(n)
        self.timesteps = self.timesteps[::-1].copy()

    def step(self, model_output, t, x, eta=0.0, variance_noise=None):
        t = int(_scalar(t))
        n_train = self.config["num_train_timesteps"]
        out, sample = _to_numpy(model_output), _to_numpy(x)
        source = min(t - n_train // self.num_inference_steps, n_train - 1)
        abar_from = float(self.alphas_cumprod[source]) if source >= 0 else self.initial_alpha_cumprod
        abar_to = float(self.alphas_cumprod[t])
        x0, eps = _split_prediction(self.config["prediction_type"], out, sample, abar_from)
        if self.config["clip_sample"]:
            r = self.config["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        nxt = math.sqrt(abar_to) * x0 + math.sqrt(1 - abar_to) * eps
        return _like(nxt, x), _like(x0, x)


class _Indexed(_Base):
    """Step-index bookkeeping of diffusers' sigma-based schedulers (needed for img2img slicing)."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.step_index: int | None = None
        self.begin_index: int | None = None

    def set_begin_index(self, i: int) -> None:
        self.begin_index = int(i)

    def _index_of(self, t: float) -> int:
        hits = np.nonzero(self.timesteps == t)[0]
        if len(hits) == 0:
            return self._missing_timestep(t)
        # A repeated timestep starts at its second occurrence so a mid-schedule start does not skip a sigma.
        return int(hits[1] if len(hits) > 1 else hits[0])

    def _missing_timestep(self, t: float) -> int:
        raise ValueError(f"timestep {t} is not in the schedule")

    def _current_index(self, t: Any) -> int:
        if self.step_index is None:
            self.step_index = self.begin_index if self.begin_index is not None else self._index_of(_scalar(t))
        return self.step_index

    def _noise_index(self, t: Any) -> int:
        if self.begin_index is None:
            return self._index_of(_scalar(t))
        return self.step_index if self.step_index is not None else self.begin_index


class DPMSolverPP2M(_Indexed):
    """DPM-Solver++ (data prediction), multistep second order, Algorithm 2 of Lu et al."""

    kind = "dpm++2m"

    def __init__(self, config: dict):
        super().__init__(config)
        if self.config["rescale_betas_zero_snr"]:
            # A zero terminal abar would make lambda infinite at the first step.
            self.alphas_cumprod = self.alphas_cumprod.copy()
            self.alphas_cumprod[-1] = 2.0**-24

    def _alpha_sigma_at(self, k: int) -> tuple[float, float]:
        """alpha, sigma of the VP process at schedule position k (k = n is the end of sampling)."""
        if k < len(self.timesteps):
            abar = float(self.alphas_cumprod[self.timesteps[k]])
        elif self.config["final_sigmas_type"] == "zero":
            return 1.0, 0.0
        else:
            abar = float(self.alphas_cumprod[0])
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def set_timesteps(self, n: int) -> None:
        self._check_steps(n)
        c = self.config
        n_train = c["num_train_timesteps"]
        abar = self.alphas_cumprod
        log_snr = 0.5 * np.log(abar) - 0.5 * np.log(1.0 - abar)
        last = n_train - int(np.sum(log_snr < c["lambda_min_clipped"]))
        spacing = c["timestep_spacing"]
        if spacing == "linspace":
            ts = np.round(np.linspace(0, last - 1, n + 1))[::-1][:-1]
        elif spacing == "leading":
            ts = (np.arange(n + 1) * (last // (n + 1)))[::-1][:-1] + c["steps_offset"]
        else:
            ratio = n_train / n
            ts = np.round(np.arange(last, 0, -ratio)[:n]) - 1
        self.timesteps = ts.astype(np.int64)
        self.num_inference_steps = len(self.timesteps)
        self.step_index = None
        self.begin_index = None
        self._previous_x0: np.ndarray | None = None
        self._steps_taken = 0

    def _missing_timestep(self, t: float) -> int:
        return len(self.timesteps) - 1

    def step(self, model_output, t, x, eta=0.0, variance_noise=None):
        k = self._current_index(t)
        n = len(self.timesteps)
        c = self.config
        out, sample = _to_numpy(model_output), _to_numpy(x)
        alpha_s, sigma_s = self._alpha_sigma_at(k)
        alpha_t, sigma_t = self._alpha_sigma_at(k + 1)
        x0 = _split_prediction(c["prediction_type"], out, sample, alpha_s**2)[0]

        final = k == n - 1
        first_order = (
            c["solver_order"] == 1
            or self._steps_taken == 0
            or (final and (c["euler_at_final"] or (c["lower_order_final"] and n < 15) or c["final_sigmas_type"] == "zero"))
        )
        if sigma_t == 0.0:
            # The limit of the update as sigma_t -> 0 (lambda -> inf): the data prediction itself.
            prev = x0.copy()
        else:
            lam_s = math.log(alpha_s / sigma_s)
            lam_t = math.log(alpha_t / sigma_t)
            h = lam_t - lam_s
            phi = math.exp(-h) - 1.0
            if first_order:
                d = x0
                prev = (sigma_t / sigma_s) * sample - alpha_t * phi * d
            else:
                alpha_u, sigma_u = self._alpha_sigma_at(k - 1)
                r = (lam_s - math.log(alpha_u / sigma_u)) / h
                if c["solver_type"] == "midpoint":
                    # Algorithm 2: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}
                    d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self._previous_x0
                    prev = (sigma_t / sigma_s) * sample - alpha_t * phi * d
                else:
                    slope = (x0 - self._previous_x0) / r
                    prev = (sigma_t / sigma_s) * sample - alpha_t * phi * x0 + alpha_t * (phi / h + 1.0) * slope
        self._previous_x0 = x0
        self._steps_taken += 1
        self.step_index = k + 1
        return _like(prev, x), _like(x0, x)

    def add_noise(self, x0, noise, t):
        alpha, sigma = self._alpha_sigma_at(self._noise_index(t))
        return _like(alpha * _to_numpy(x0) + sigma * _to_numpy(noise), x0)


class EulerDiscrete(_Indexed):
    """Karras et al. Algorithm 2 (no churn) on the model's discrete sigmas."""

    kind = "euler"

    def __init__(self, config: dict):
        super().__init__(config)
        if self.config["rescale_betas_zero_snr"]:
            self.alphas_cumprod = self.alphas_cumprod.copy()
            self.alphas_cumprod[-1] = 2.0**-24
        self._train_sigmas = np.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
        n_train = self.config["num_train_timesteps"]
        self.timesteps = np.linspace(0, n_train - 1, n_train)[::-1].astype(np.float32).astype(np.float64)
        self.sigmas = np.concatenate([self._train_sigmas[::-1], [0.0]])

    @property
    def init_noise_sigma(self) -> float:
        top = float(np.max(self.sigmas))
        # With leading spacing diffusers scales the initial noise as the model input would be unscaled.
        return math.sqrt(top**2 + 1) if self.config["timestep_spacing"] == "leading" else top

    def set_timesteps(self, n: int) -> None:
        self._check_steps(n)
        c = self.config
        ts = _descending_timesteps(c["timestep_spacing"], c["num_train_timesteps"], n, c["steps_offset"])
        # Timesteps are float32 in diffusers (fractional for linspace); sigma is read at those values.
        self.timesteps = ts.astype(np.float32).astype(np.float64)
        grid = np.arange(len(self._train_sigmas))
        last = 0.0 if c["final_sigmas_type"] == "zero" else float(self._train_sigmas[0])
        self.sigmas = np.concatenate([np.interp(self.timesteps, grid, self._train_sigmas), [last]])
        self.num_inference_steps = n
        self.step_index = None
        self.begin_index = None

    def scale_model_input(self, x, t):
        sigma = self.sigmas[self._current_index(t)]
        return _like(_to_numpy(x) / math.sqrt(sigma**2 + 1), x)

    def _denoised(self, out: np.ndarray, sample: np.ndarray, sigma: float) -> np.ndarray:
        kind = self.config["prediction_type"]
        if kind == "epsilon":
            return sample - sigma * out
        if kind == "v_prediction":
            # Karras et al. Table 1 with sigma_data = 1: c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(sigma^2+1).
            return sample / (sigma**2 + 1) - sigma / math.sqrt(sigma**2 + 1) * out
        return out

    def step(self, model_output, t, x, eta=0.0, variance_noise=None):
        k = self._current_index(t)
        sigma, sigma_next = float(self.sigmas[k]), float(self.sigmas[k + 1])
        out, sample = _to_numpy(model_output), _to_numpy(x)
        x0 = self._denoised(out, sample, sigma)
        d = (sample - x0) / sigma
        prev = sample + (sigma_next - sigma) * d
        self.step_index = k + 1
        return _like(prev, x), _like(x0, x)

    def add_noise(self, x0, noise, t):
        sigma = float(self.sigmas[self._noise_index(t)])
        return _like(_to_numpy(x0) + sigma * _to_numpy(noise), x0)


_CLASSES = {"ddim": DDIM, "ddim-inverse": DDIMInverse, "dpm++2m": DPMSolverPP2M, "euler": EulerDiscrete}


def from_config(config: dict, override: str | None = None):
    """The scheduler a scheduler_config.json describes (or `override`), as EditKit's createScheduler picks it.

    Classes EditKit does not implement but whose configs share the beta schedule get DDIM, with
    ``.notice`` set.
    """
    if override is not None:
        if override not in _CLASSES:
            raise ValueError(f"unknown override {override!r}; use one of {sorted(_CLASSES)}")
        return _CLASSES[override](config)
    name = config.get("_class_name")
    if name in _IMPLEMENTED:
        return _CLASSES[_IMPLEMENTED[name]](config)
    if name in _DDIM_STAND_INS:
        scheduler = DDIM(config)
        scheduler.notice = f"{name} is not implemented; using DDIM built from the same noise schedule"
        return scheduler
    raise ValueError(f"unsupported _class_name {name!r}")
