"""The samplers (§3.2 eq. 4): DPM-Solver++ 2M, DDIM (η = 0) and Euler, on the training ᾱ.

Each is a small stateful object in diffusers' shape: ``set_timesteps``, then one ``step`` per entry
of ``timesteps``, noisiest first. They follow diffusers' ``DPMSolverMultistepScheduler``,
``DDIMScheduler`` and ``EulerDiscreteScheduler`` as ``schedule.py`` configured them (ε-prediction,
no clipping, the same timestep spacings), step for step to ~1e-6 (tests/diffusion/test_samplers.py
runs both), without importing diffusers: that import alone took 3.4 s of an 11 s ``jen1 generate``
on 2 CPU cores. Coefficients are Python floats computed in float64; the latents stay float32.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.noise_schedule import NoiseSchedule

SPACINGS: tuple[str, ...] = ("trailing", "leading", "linspace")
"""Accepted ``DiffusionConfig.timestep_spacing`` values (Lin et al. 2024, Table 2)."""


def _check_spacing(spacing: str) -> None:
    if spacing not in SPACINGS:
        choices = ", ".join(SPACINGS)
        raise ValueError(f"unknown timestep_spacing {spacing!r}; choose one of: {choices}")


def spaced_timesteps(num_train: int, steps: int, spacing: str, *, skip_zero: bool) -> list[float]:
    """``steps`` timesteps in [0, T − 1], noisiest first, laid out by ``spacing``.

    "trailing" starts at T − 1 and goes down by T / steps; "leading" goes up from 0 by the integer
    ratio T // points; "linspace" spreads points evenly over [0, T − 1]. With ``skip_zero``
    (DPM-Solver's layout) the latter two lay out steps + 1 points and drop t = 0, otherwise
    ``steps`` points. Values are computed as NumPy's ``arange`` / ``linspace`` compute them and
    rounded half to even, as NumPy rounds, so each equals diffusers' (a plain T − i · T / steps
    rounds differently at 50 step counts, 48 the first).
    """
    _check_spacing(spacing)
    if spacing == "trailing":
        ratio = num_train / steps
        delta = (num_train - ratio) - num_train  # arange fills start + i * (its first difference)
        # diffusers keeps every value arange gives: for 62 step counts up to 1000 (61, 103, ...)
        # float error adds one at t = −1. Exactly ``steps`` are taken here.
        return [float(round(num_train + i * delta) - 1) for i in range(steps)]
    points = steps + 1 if skip_zero else steps
    if spacing == "leading":
        ratio = num_train // points
        grid = [float(k * ratio) for k in range(points)]
    else:  # linspace
        grid = [0.0]  # NumPy's linspace of one point is its start
        if points > 1:
            step = (num_train - 1) / (points - 1)
            grid = [k * step for k in range(points - 1)] + [float(num_train - 1)]
    return (grid[1:] if skip_zero else grid)[::-1]


class Sampler:
    """What the samplers share: the training schedule, a run's timesteps and the step counter.

    Call :meth:`set_timesteps`, optionally :meth:`set_begin_index` (a partial denoise), then per
    entry of ``timesteps`` :meth:`scale_model_input` for the network's input and :meth:`step` with
    its ε̂. ``config`` is the :class:`DiffusionConfig` it was built from: ``type(s)(s.config)`` is a
    fresh copy.
    """

    name: ClassVar[str]
    skip_zero: ClassVar[bool] = False  # see spaced_timesteps
    timestep_dtype: ClassVar[torch.dtype] = torch.long

    def __init__(self, config: DiffusionConfig) -> None:
        _check_spacing(config.timestep_spacing)
        self.config = config
        self.schedule = NoiseSchedule(config)
        self.alphas_cumprod = self.schedule.alphas_cumprod  # ᾱ [T] float64, shared with training
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=self.timestep_dtype)  # [N], noisiest first
        self._t: list[float] = []  # the same timesteps as Python numbers
        self._begin = 0  # index of the run's first step
        self._index = 0  # index of the next step

    @property
    def init_noise_sigma(self) -> float:
        """The scale of the pure-noise start (1 for the variance-preserving samplers)."""
        return 1.0

    def set_timesteps(self, steps: int, device: torch.device | str | None = None) -> None:
        """Lay out ``steps`` timesteps (``config.timestep_spacing``) and start a new run."""
        num_train = self.config.num_train_timesteps
        if not 1 <= steps <= num_train:
            raise ValueError(f"num_inference_steps must be in 1..{num_train}, got {steps}")
        values = spaced_timesteps(
            num_train, steps, self.config.timestep_spacing, skip_zero=self.skip_zero
        )
        timesteps = torch.tensor(values, dtype=torch.float64)
        if self.timestep_dtype == torch.long:
            timesteps = timesteps.round()  # half to even, as NumPy rounds
        timesteps = timesteps.to(self.timestep_dtype)
        self._t = timesteps.tolist()
        self.timesteps = timesteps.to(device)
        self.num_inference_steps = steps
        self._prepare()
        self.set_begin_index(0)

    def set_begin_index(self, index: int) -> None:
        """Start the run at ``timesteps[index]`` instead of the first (SDEdit's partial denoise)."""
        self._require_timesteps()
        if not 0 <= index < len(self._t):
            raise ValueError(f"begin index {index} is outside the {len(self._t)} timesteps")
        self._begin = self._index = index
        self._reset()

    def scale_model_input(self, sample: Tensor) -> Tensor:
        """The network's input for the current step (the sample itself, here)."""
        return sample

    def add_noise(self, clean: Tensor, noise: Tensor) -> Tensor:
        """``clean`` [B, ...] noised with ``noise`` to the level of the run's first step."""
        self._require_timesteps()
        t = torch.full((clean.shape[0],), int(self._t[self._begin]), dtype=torch.long)
        return self.schedule.add_noise(clean, noise, t)

    def step(self, eps: Tensor, sample: Tensor) -> Tensor:
        """The sample [B, k, T] at the next timestep, from ε̂ [B, k, T] at the current one (fp32)."""
        self._require_timesteps()
        if self._index >= len(self._t):
            raise RuntimeError(f"all {len(self._t)} steps are done: call set_timesteps again")
        out = self._step(self._index, eps.float(), sample.float())
        self._index += 1
        return out

    def _require_timesteps(self) -> None:
        if self.num_inference_steps is None:
            raise RuntimeError(f"{type(self).__name__}: call set_timesteps first")

    def _prepare(self) -> None:
        """Per-step coefficients for ``self._t``."""

    def _reset(self) -> None:
        """Forget the history of a previous run."""

    def _step(self, i: int, eps: Tensor, sample: Tensor) -> Tensor:
        raise NotImplementedError


class DPMSolverPP2M(Sampler):
    """DPM-Solver++ 2M (Lu et al. 2022, Alg. 2): multistep, second order, on x̂_0 = (x − σ ε̂) / α.

    With λ = log(α / σ) and h = λ_next − λ: x_next = (σ_next / σ) x − α_next (e^{−h} − 1) D, where
    D = x̂_0 + (x̂_0 − x̂_0,prev) / (2r), r = h_prev / h (the midpoint form). The first step of a run
    has no previous x̂_0 and takes D = x̂_0 (first order, DDIM); the last goes to σ = 0 and lands
    on x̂_0 itself. These are diffusers' defaults (lower_order_final, final_sigmas_type="zero").
    """

    name = "dpmsolver++"
    skip_zero = True

    def _prepare(self) -> None:
        alpha_bar = [float(self.alphas_cumprod[int(t)]) for t in self._t]
        self._alpha = [math.sqrt(a) for a in alpha_bar] + [1.0]
        self._sigma = [math.sqrt(1 - a) for a in alpha_bar] + [0.0]
        self._lambda = [0.5 * math.log(a / (1 - a)) for a in alpha_bar] + [math.inf]

    def _reset(self) -> None:
        self._previous: Tensor | None = None  # x̂_0 of the run's previous step

    def _step(self, i: int, eps: Tensor, sample: Tensor) -> Tensor:
        x0 = (sample - self._sigma[i] * eps) / self._alpha[i]  # x̂_0 [B, k, T]
        previous, self._previous = self._previous, x0
        if self._sigma[i + 1] == 0.0:
            return x0
        h = self._lambda[i + 1] - self._lambda[i]
        d = x0
        if previous is not None:
            r = (self._lambda[i] - self._lambda[i - 1]) / h
            d = x0 + (x0 - previous) / (2 * r)
        return (self._sigma[i + 1] / self._sigma[i]) * sample - (
            self._alpha[i + 1] * math.expm1(-h)
        ) * d


class DDIMSampler(Sampler):
    """DDIM with η = 0 (Song et al. 2021, eq. 12): x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂.

    As diffusers' DDIM, the previous timestep is t − T // steps (ᾱ = 1 below 0) whatever the
    spacing: where that is not the next timestep (linspace, or trailing with a step count that does
    not divide T) a run can end at t = 0, one training step of noise (σ ≈ 0.03) short of clean.
    """

    name = "ddim"

    def _prepare(self) -> None:
        jump = self.config.num_train_timesteps // len(self._t)
        self._coefficients = []
        for t in self._t:
            alpha_bar = float(self.alphas_cumprod[int(t)])
            prev = int(t) - jump
            alpha_bar_prev = float(self.alphas_cumprod[prev]) if prev >= 0 else 1.0
            self._coefficients.append(
                (
                    math.sqrt(alpha_bar),
                    math.sqrt(1 - alpha_bar),
                    math.sqrt(alpha_bar_prev),
                    math.sqrt(1 - alpha_bar_prev),
                )
            )

    def _step(self, i: int, eps: Tensor, sample: Tensor) -> Tensor:
        signal, noise, signal_prev, noise_prev = self._coefficients[i]
        x0 = (sample - noise * eps) / signal  # x̂_0 [B, k, T]
        return signal_prev * x0 + noise_prev * eps


def _interp(table: Tensor, t: float) -> float:
    """``table`` [T] at a fractional index, linearly interpolated (NumPy's ``interp``)."""
    t = min(max(t, 0.0), table.numel() - 1.0)
    lo = int(t)
    hi = min(lo + 1, table.numel() - 1)
    frac = t - lo
    return float(table[lo]) * (1 - frac) + float(table[hi]) * frac


class EulerSampler(Sampler):
    """Euler steps of the probability-flow ODE dx/dσ = ε̂ in σ = √((1 − ᾱ) / ᾱ) (Karras et al. 2022).

    The sample is x = z / √ᾱ (variance 1 + σ²): the network sees x / √(σ² + 1) = z_t, and a step
    is x_next = x + (σ_next − σ) ε̂, down to σ = 0. σ is interpolated linearly in t between training
    steps (linspace spacing gives fractional timesteps, passed to the network as such).
    """

    name = "euler"
    timestep_dtype = torch.float32

    def _prepare(self) -> None:
        table = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()  # σ_t [T] float64
        self._sigmas = [_interp(table, t) for t in self._t] + [0.0]

    @property
    def init_noise_sigma(self) -> float:
        """σ_max, the pure-noise start's scale (√(σ_max² + 1) for leading spacing, as diffusers)."""
        self._require_timesteps()
        sigma = max(self._sigmas)
        return math.sqrt(sigma**2 + 1) if self.config.timestep_spacing == "leading" else sigma

    def scale_model_input(self, sample: Tensor) -> Tensor:
        """z_t = x / √(σ² + 1), the network's input at the current step."""
        self._require_timesteps()
        return sample / math.sqrt(self._sigmas[self._index] ** 2 + 1)

    def add_noise(self, clean: Tensor, noise: Tensor) -> Tensor:
        """x = z_0 + σ ε at the run's first step (σ-space: z_0 is not scaled)."""
        self._require_timesteps()
        return clean + self._sigmas[self._begin] * noise

    def _step(self, i: int, eps: Tensor, sample: Tensor) -> Tensor:
        return sample + (self._sigmas[i + 1] - self._sigmas[i]) * eps


SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (DPMSolverPP2M, DDIMSampler, EulerSampler)
}
"""The samplers by name, in ``schedule.SCHEDULERS``' order."""
