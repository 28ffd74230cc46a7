"""Noise schedules (§3.2): the training scheduler and the sampling ones, on the same betas."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from jen1cli.config import DiffusionConfig

SCHEDULERS: tuple[str, ...] = ("dpmsolver++", "ddim", "euler")
"""Names accepted by :func:`make_sampling_scheduler` (and the CLI's ``--scheduler``)."""


def _beta_kwargs(config: DiffusionConfig) -> dict[str, Any]:
    """The schedule every scheduler shares: one source of betas for training and sampling."""
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": config.beta_schedule,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "prediction_type": "epsilon",
    }


def make_noise_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """The training scheduler: its ``add_noise`` gives z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε (§3.2 eq. 3)."""
    # Whitened latents have unit variance, so values beyond ±1 are normal: never clip them.
    return DDPMScheduler(**_beta_kwargs(config), clip_sample=False)


def make_sampling_scheduler(config: DiffusionConfig, name: str | None = None) -> SchedulerMixin:
    """A sampling scheduler by name (``config.scheduler`` when None), on the training betas."""
    name = config.scheduler if name is None else name
    kwargs = _beta_kwargs(config)
    # "trailing" spacing starts every sampler at the last training step (t = T − 1), the step whose
    # noise level matches the pure-noise start; "leading" (DDIM's default) would start below it.
    kwargs["timestep_spacing"] = config.timestep_spacing
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddim":
        # diffusers' DDIM steps t -> t - T // steps: with a step count that does not divide T it
        # ends at t = 0 (noise σ ≈ 0.03 left) instead of clean; DPM-Solver++ and Euler end at σ = 0.
        return DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=True)
    if name == "euler":
        return EulerDiscreteScheduler(**kwargs)
    raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
