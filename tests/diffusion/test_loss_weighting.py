"""DiffusionConfig.loss_weighting: uniform (the paper's ε-MSE) and min-SNR-γ per-sample weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from jen1cli.config import DiffusionConfig, Jen1Config
from jen1cli.diffusion.objective import diffusion_loss, timestep_weights
from jen1cli.diffusion.schedule import make_noise_scheduler
from jen1cli.diffusion.tasks import TASK_NAMES, Task

K, T, D = 4, 24, 8


class RecordingScheduler:
    """The training scheduler, remembering the ε and t that ``diffusion_loss`` drew."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.inner = make_noise_scheduler(config)
        self.config = self.inner.config
        self.alphas_cumprod = self.inner.alphas_cumprod
        self.noise: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self.noisy: torch.Tensor | None = None

    def add_noise(self, latents, noise, timesteps):
        self.noise, self.timesteps = noise.clone(), timesteps.clone()
        self.noisy = self.inner.add_noise(latents, noise, timesteps)
        return self.noisy


class Probe(nn.Module):
    """ε̂ = a · x_t + b · mask (per sample, no mixing across the batch); records each call's mask."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))
        self.b = nn.Parameter(torch.tensor(0.3))
        self.masks: dict[bool, torch.Tensor] = {}

    def forward(self, sample, timestep, masked_latent, mask, *args, causal=False):
        self.masks[causal] = mask.clone()
        return self.a * sample + self.b * mask


def _batch(b: int = 10, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, K, T, generator=gen)
    context = torch.randn(b, 5, D, generator=gen)
    context_mask = torch.ones(b, 5, dtype=torch.bool)
    return latents, context, context_mask


def _run(config: DiffusionConfig, seed: int = 0, b: int = 10):
    """The loss, plus everything needed to recompute it by hand (ε, t, ε̂ and the full mask)."""
    probe, scheduler = Probe(), RecordingScheduler(config)
    latents, context, context_mask = _batch(b)
    out = diffusion_loss(
        probe,
        latents,
        context,
        context_mask,
        scheduler,
        config,
        torch.Generator().manual_seed(seed),
    )
    causal = out.assignment.causal
    mask = torch.empty(b, 1, T)
    for flag in (False, True):  # diffusion_loss runs each mode's rows in batch order
        if (causal == flag).any():
            mask[causal == flag] = probe.masks[flag]
    with torch.no_grad():
        eps_hat = probe.a * scheduler.noisy + probe.b * mask
    return out, scheduler, eps_hat, mask


def _snr(config: DiffusionConfig, timesteps: torch.Tensor) -> torch.Tensor:
    alphas = make_noise_scheduler(config).alphas_cumprod.double()[timesteps]
    return alphas / (1 - alphas)


# --- timestep_weights -------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_min_snr_weights_are_one_at_high_noise_and_gamma_over_snr_at_low_noise(gamma):
    config = DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=gamma)
    t = torch.arange(config.num_train_timesteps)
    w = timestep_weights(make_noise_scheduler(config), t, config)
    assert w.shape == t.shape and w.dtype == torch.float32
    snr = _snr(config, t)
    noisy = snr <= gamma
    low_noise = ~noisy
    assert noisy.any() and low_noise.any()  # both regimes are present for these γ
    assert torch.equal(w[noisy], torch.ones(int(noisy.sum())))
    # Below the noise level where SNR = γ, w = γ / SNR: w · SNR stays at γ.
    torch.testing.assert_close((w[low_noise].double() * snr[low_noise]),
                               torch.full((int(low_noise.sum()),), gamma, dtype=torch.float64),
                               rtol=1e-6, atol=0)  # fmt: skip
    assert (w[low_noise] < 1).all() and (w > 0).all()
    # SNR falls with t, so the weight never falls with t (and the cleanest step weighs least).
    assert (w[1:] >= w[:-1]).all() and w[0] == w.min() and w[-1] == 1


def test_gamma_scales_the_low_noise_weights():
    t = torch.tensor([0, 10, 50])  # SNR far above 20 for these: w = γ / SNR
    weights = {
        g: timestep_weights(
            make_noise_scheduler(DiffusionConfig()),
            t,
            DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=g),
        )
        for g in (2.0, 8.0)
    }
    torch.testing.assert_close(weights[8.0], 4 * weights[2.0])


def test_uniform_weights_are_ones():
    config = DiffusionConfig()
    t = torch.tensor([0, 1, 500, 999])
    assert torch.equal(timestep_weights(make_noise_scheduler(config), t, config), torch.ones(4))


def test_unknown_weighting_or_bad_gamma_raises():
    scheduler = make_noise_scheduler(DiffusionConfig())
    t = torch.tensor([3, 600])
    bogus = DiffusionConfig(loss_weighting="p2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown loss_weighting 'p2'"):
        timestep_weights(scheduler, t, bogus)
    with pytest.raises(ValueError, match="unknown loss_weighting"):
        latents, context, context_mask = _batch(4)
        diffusion_loss(Probe(), latents, context, context_mask, scheduler, bogus)
    for gamma in (0.0, -1.0):
        config = DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=gamma)
        with pytest.raises(ValueError, match="min_snr_gamma must be positive"):
            timestep_weights(scheduler, t, config)


# --- the loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("known_weight", [1.0, 0.25])
def test_uniform_loss_is_the_previous_global_weighted_mean(known_weight):
    config = DiffusionConfig(known_frames_loss_weight=known_weight)
    out, scheduler, eps_hat, mask = _run(config)
    # The formula before loss_weighting existed: every weighted element counts once.
    squared = (eps_hat - scheduler.noise) ** 2  # [B, k, T]
    weight = (mask + known_weight * (1 - mask)).expand_as(squared)
    expected = (squared * weight).sum() / weight.sum()
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-6, atol=0)
    if known_weight != 1.0:
        # Masks differ between samples here, so the per-sample mean differs from the global one:
        # this test tells the two formulas apart.
        per_sample = (squared * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
        assert abs(per_sample.mean().item() - expected.item()) > 1e-4


def test_min_snr_loss_is_the_weighted_mean_of_per_sample_losses():
    config = DiffusionConfig(
        loss_weighting="min_snr", min_snr_gamma=5.0, known_frames_loss_weight=0.5
    )
    out, scheduler, eps_hat, mask = _run(config, seed=3, b=16)
    squared = (eps_hat - scheduler.noise) ** 2
    weight = (mask + 0.5 * (1 - mask)).expand_as(squared)
    per_sample = (squared * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))  # [B]
    snr = _snr(config, scheduler.timesteps)
    w = (snr.clamp(max=5.0) / snr).float()
    assert (w < 1).any() and (w == 1).any()  # both regimes in this draw
    torch.testing.assert_close(out.loss.detach(), (per_sample * w).mean(), rtol=1e-6, atol=0)
    # The logged per-task figures stay the plain (unweighted) ε-MSE.
    for task in Task:
        rows = out.assignment.task == task
        if rows.any():
            expected = per_sample[rows].mean().item()
            assert out.per_task[TASK_NAMES[task]] == pytest.approx(expected, rel=1e-5)


def test_min_snr_with_a_huge_gamma_equals_uniform():
    # Every weight is 1 and each sample has as many elements: the same number either way.
    uniform, *_ = _run(DiffusionConfig(), seed=7)
    huge, *_ = _run(DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=1e12), seed=7)
    torch.testing.assert_close(huge.loss, uniform.loss, rtol=1e-6, atol=0)
    small, *_ = _run(DiffusionConfig(loss_weighting="min_snr", min_snr_gamma=0.5), seed=7)
    assert small.loss.item() < uniform.loss.item()  # weights <= 1, some < 1


def test_min_snr_loss_is_differentiable():
    config = DiffusionConfig(loss_weighting="min_snr")
    probe = Probe()
    latents, context, context_mask = _batch(8)
    out = diffusion_loss(
        probe,
        latents,
        context,
        context_mask,
        make_noise_scheduler(config),
        config,
        torch.Generator().manual_seed(1),
    )
    assert out.loss.ndim == 0 and out.loss.requires_grad and torch.isfinite(out.loss)
    out.loss.backward()
    for p in probe.parameters():
        assert p.grad is not None and torch.isfinite(p.grad) and p.grad.abs() > 0


def test_config_json_round_trips_the_new_fields():
    config = Jen1Config()
    config.diffusion = dataclasses.replace(
        config.diffusion, loss_weighting="min_snr", min_snr_gamma=3.0
    )
    again = Jen1Config.from_dict(config.to_dict())
    assert again.diffusion.loss_weighting == "min_snr" and again.diffusion.min_snr_gamma == 3.0
    data = Jen1Config().to_dict()
    del data["diffusion"]["loss_weighting"], data["diffusion"]["min_snr_gamma"]
    old = Jen1Config.from_dict(data)  # a config.json written before the fields existed
    assert old.diffusion.loss_weighting == "uniform" and old.diffusion.min_snr_gamma == 5.0
