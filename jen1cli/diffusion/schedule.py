"""Noise schedules (§3.2): the training schedule and the samplers, on the same betas.

Only names live at the top of this module: ``jen1 generate --scheduler`` checks a name against
``SCHEDULERS`` before torch is imported, so the classes are imported where they are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jen1cli.config import DiffusionConfig

if TYPE_CHECKING:
    from jen1cli.diffusion.noise_schedule import NoiseSchedule
    from jen1cli.diffusion.samplers import Sampler

SCHEDULERS: tuple[str, ...] = ("dpmsolver++", "ddim", "euler")
"""Names accepted by :func:`make_sampling_scheduler` (and the CLI's ``--scheduler``)."""


def make_noise_scheduler(config: DiffusionConfig) -> NoiseSchedule:
    """The training schedule: its ``add_noise`` gives z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε (§3.2 eq. 3).

    Whitened latents have unit variance, so values beyond ±1 are normal: nothing is clipped.
    """
    from jen1cli.diffusion.noise_schedule import NoiseSchedule

    return NoiseSchedule(config)


def make_sampling_scheduler(config: DiffusionConfig, name: str | None = None) -> Sampler:
    """A sampler by name (``config.scheduler`` when None), on the training betas.

    ``config.timestep_spacing`` "trailing" (the default) starts every sampler at the last training
    step (t = T − 1), the step whose noise level matches the pure-noise start; "leading" would
    start below it.
    """
    name = config.scheduler if name is None else name
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    from jen1cli.diffusion.samplers import SAMPLERS

    return SAMPLERS[name](config)
