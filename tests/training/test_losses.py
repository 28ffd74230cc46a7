"""Autoencoder losses and reconstruction metrics."""

import math

import pytest
import torch

from jen1cli.training.losses import (
    MultiResolutionSTFTLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    l1_waveform_loss,
    multi_resolution_stft_distance,
    si_sdr,
)

FFTS = (256, 128, 64)


def _signal(batch=2, channels=2, length=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 8000
    tone = torch.sin(2 * math.pi * 440 * t)
    return tone + 0.1 * torch.randn(batch, channels, length, generator=g)


def test_mrstft_zero_for_identical_positive_and_differentiable_otherwise():
    loss = MultiResolutionSTFTLoss(FFTS)
    x = _signal()
    assert loss(x, x.clone()).item() == 0.0
    estimate = (x + 0.05 * _signal(seed=1)).requires_grad_()
    value = loss(estimate, x)
    assert value.item() > 0
    value.backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0
    # More distortion, more loss.
    assert loss(x + 0.5 * _signal(seed=1), x) > loss(x + 0.05 * _signal(seed=1), x)


def test_mrstft_handles_channels_separately_and_silence():
    loss = MultiResolutionSTFTLoss(FFTS)
    x = _signal()
    swapped = x.flip(1)  # left <-> right: a mono downmix before the STFT would see no change
    assert loss(swapped, x) > 0
    silent = torch.zeros(1, 2, 512, requires_grad=True)
    value = loss(silent, torch.zeros(1, 2, 512))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(silent.grad).all()
    with pytest.raises(ValueError, match="shape"):
        loss(x, x[:, :1])


def test_mrstft_distance_metric_per_example():
    x = _signal(batch=3)
    y = x.clone()
    y[1] += 0.3 * torch.randn_like(y[1])
    d = multi_resolution_stft_distance(y, x, FFTS, reduction="none")
    assert d.shape == (3,)
    assert d[0] == 0 and d[2] == 0 and d[1] > 0
    assert multi_resolution_stft_distance(y, x, FFTS) == pytest.approx(d.mean().item())
    # [C, T] and [T] inputs are single examples.
    assert multi_resolution_stft_distance(y[1], x[1], FFTS) == pytest.approx(d[1].item())
    assert multi_resolution_stft_distance(x[0, 0], x[0, 0], FFTS) == 0


def test_l1_waveform():
    x = torch.zeros(1, 2, 4)
    assert l1_waveform_loss(x + 0.5, x).item() == pytest.approx(0.5)


def test_si_sdr_self_noise_and_scale_invariance():
    ref = _signal(batch=1, channels=2, length=4000)
    assert (si_sdr(ref, ref) > 80).all()  # numerically identical: very large
    noise = 0.1 * torch.randn_like(ref, generator=torch.Generator().manual_seed(1))
    noisy = si_sdr(ref + noise, ref)
    assert noisy.shape == (1, 2)
    assert (noisy < 40).all() and (noisy > 5).all()
    # Rescaling the estimate (or the reference) does not change the score.
    torch.testing.assert_close(si_sdr(3.0 * (ref + noise), ref), noisy, rtol=0, atol=1e-4)
    torch.testing.assert_close(si_sdr(ref + noise, 0.2 * ref), noisy, rtol=0, atol=1e-4)
    louder_noise = si_sdr(ref + 4 * noise, ref)
    assert (louder_noise < noisy).all()


def test_hinge_losses():
    real = [torch.tensor([2.0, 0.5]), torch.tensor([[1.5]])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([[-0.5]])]
    # Scale 1: relu(1-real) = [0, .5] -> .25; relu(1+fake) = [0, 1] -> .5; scale 2: 0 + .5.
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx((0.75 + 0.5) / 2)
    # Generator: relu(1-fake): scale 1 [3, 1] -> 2; scale 2 1.5.
    assert generator_hinge_loss(fake).item() == pytest.approx((2.0 + 1.5) / 2)
    with pytest.raises(ValueError):
        discriminator_hinge_loss(real, fake[:1])


def test_feature_matching():
    g = torch.Generator().manual_seed(0)
    real = [[torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 8, 4, generator=g)]]
    assert feature_matching_loss(real, [[f.clone() for f in real[0]]]).item() == 0.0
    fake = [[(f + 0.1).requires_grad_() for f in real[0]]]
    value = feature_matching_loss(real, fake)
    expected = sum(0.1 / f.abs().mean() for f in real[0]) / 2
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # Scale-free: the same relative error on 100x larger features gives the same loss.
    big_real = [[100 * f for f in real[0]]]
    big_fake = [[100 * f.detach() for f in fake[0]]]
    assert feature_matching_loss(big_real, big_fake).item() == pytest.approx(value.item(), rel=1e-4)
    value.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in fake[0])
