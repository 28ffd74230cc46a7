"""The U-Net's output parametrisation: ε directly, or v with a noise-dependent skip (issue 16).

With ``prediction="v"`` the network's raw output is read as v̂ (Salimans & Ho 2022) and turned into
ε̂ = √ᾱ_t · v̂ + √(1 − ᾱ_t) · x_t before it leaves the U-Net, so everything outside (the ε-MSE
objective, guidance, every sampler) still sees an ε-predictor. On unit-variance latents this is
EDM's preconditioning with σ_data = 1: the skip term √(1 − ᾱ_t) · x_t alone is the best linear
denoiser, so an untrained network starts at that bound instead of at ε̂ = 0, and at high noise,
where the posterior is nearly linear, the network only has to learn a small correction.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from jen1cli.config import DiffusionConfig

Prediction = Literal["epsilon", "v"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "v")


def alphas_cumprod(config: DiffusionConfig) -> Tensor:
    """ᾱ_t for t = 0 … T−1 [T] float64, the same betas as diffusers' DDPMScheduler builds."""
    n = config.num_train_timesteps
    # device="cpu" also under torch.device("meta") (model folders are checked that way), where
    # linspace would go through torch's decompositions and import ~1.2 s of modules first.
    if config.beta_schedule == "scaled_linear":
        betas = torch.linspace(
            config.beta_start**0.5, config.beta_end**0.5, n, dtype=torch.float64, device="cpu"
        )
        betas = betas**2
    elif config.beta_schedule == "linear":
        betas = torch.linspace(
            config.beta_start, config.beta_end, n, dtype=torch.float64, device="cpu"
        )
    else:
        raise ValueError(
            f"v-prediction supports the linear and scaled_linear beta schedules, "
            f"not {config.beta_schedule!r}"
        )
    return torch.cumprod(1 - betas, dim=0)


def alpha_bar_at(table: Tensor, timestep: Tensor) -> Tensor:
    """ᾱ at possibly fractional steps [B] (Euler passes them), linearly interpolated: [B] fp32."""
    t = timestep.to(table.device, torch.float64).clamp(0, table.numel() - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=table.numel() - 1)
    frac = t - lo
    return (table[lo] * (1 - frac) + table[hi] * frac).float()


def epsilon_from_v(v_hat: Tensor, sample: Tensor, alpha_bar: Tensor) -> Tensor:
    """ε̂ = √ᾱ · v̂ + √(1 − ᾱ) · x_t, with ᾱ [B] broadcast over [B, k, T]; in v̂'s dtype."""
    a = alpha_bar.to(v_hat.device)[:, None, None]
    eps = a.sqrt() * v_hat.float() + (1 - a).sqrt() * sample.float()
    return eps.to(v_hat.dtype)
