"""The forward process of §3.2: ᾱ_t on the training betas and z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε.

Training draws z_t with :meth:`NoiseSchedule.add_noise`; every sampler (``samplers.py``) reads the
same ᾱ table, so sampling can never drift from the schedule the network was trained on. The betas
are those of diffusers' ``DDPMScheduler`` (``modules/v_prediction.alphas_cumprod``), kept in
float64 (diffusers' float32 cumulative product is within 1e-6 relative of it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.config import DiffusionConfig
from jen1cli.modules.v_prediction import alphas_cumprod

BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear")
"""Accepted ``DiffusionConfig.beta_schedule`` values."""


class NoiseSchedule:
    """ᾱ_t for t = 0 … T−1 and the forward process on them (the training "noise scheduler").

    ``config`` is the :class:`DiffusionConfig` it was built from (``config.num_train_timesteps``
    is T); ``alphas_cumprod`` is ᾱ [T] float64 on the CPU.
    """

    def __init__(self, config: DiffusionConfig) -> None:
        if config.beta_schedule not in BETA_SCHEDULES:
            choices = ", ".join(BETA_SCHEDULES)
            raise ValueError(
                f"unknown beta_schedule {config.beta_schedule!r}; choose one of: {choices}"
            )
        self.config = config
        self.alphas_cumprod = alphas_cumprod(config)  # ᾱ_t [T] float64
        # √ᾱ and √(1−ᾱ) [T] per (device, dtype): training calls add_noise every step.
        self._scales: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return self.config.num_train_timesteps

    def add_noise(self, clean: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε (eq. 3) for z_0, ε [B, ...] at integer timesteps [B].

        Computed in ``clean``'s dtype on its device, as diffusers' ``DDPMScheduler`` does.
        """
        signal, noise_scale = self._scales_on(clean.device, clean.dtype)
        t = timesteps.to(clean.device).long().reshape(-1)  # [B] (or [1], broadcast)
        shape = (-1,) + (1,) * (clean.ndim - 1)
        return signal[t].view(shape) * clean + noise_scale[t].view(shape) * noise

    def _scales_on(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (device, dtype)
        if key not in self._scales:
            # Square roots in float64, then one rounding to ``dtype`` (MPS has no float64).
            signal = self.alphas_cumprod.sqrt().to(dtype).to(device)
            noise_scale = (1 - self.alphas_cumprod).sqrt().to(dtype).to(device)
            self._scales[key] = (signal, noise_scale)
        return self._scales[key]
