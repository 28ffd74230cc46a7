"""Autoencoder training losses (§4.1, after EnCodec) and the reconstruction metrics (model card).

Waveforms are [B, C, T] (mono [B, T] or [T] also accepted by the metrics). Stereo is handled per
channel: channels are folded into the batch before any STFT, so left and right are each compared
with themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512, 256, 128)
_POWER_FLOOR = 1e-10  # |X|² floor: keeps sqrt's and log's gradients finite in silent bins


def l1_waveform_loss(estimate: Tensor, reference: Tensor) -> Tensor:
    """Mean absolute sample error."""
    return F.l1_loss(estimate, reference)


def _fold_channels(x: Tensor) -> Tensor:
    """[..., T] -> [N, T]: every channel of every example becomes one mono signal."""
    return x.reshape(-1, x.shape[-1])


def _magnitude(x: Tensor, n_fft: int) -> Tensor:
    """[N, T] -> |STFT| [N, n_fft/2 + 1, frames] with a Hann window of n_fft and hop n_fft/4."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    # Zero ("constant") centre padding works for signals shorter than the FFT, unlike reflect.
    spec = torch.stft(
        x,
        n_fft,
        hop_length=n_fft // 4,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    return power.clamp_min(_POWER_FLOOR).sqrt()


def _stft_distance(estimate: Tensor, reference: Tensor, n_fft: int, per_example: bool) -> Tensor:
    """Spectral convergence + log-magnitude L1 at one resolution: [B] per example, or [1] pooled."""
    rows = estimate.shape[0] if per_example else 1
    # [B, C, T] -> [B·C, F, frames] -> [rows, C·F·frames]: one row per example, or one for all.
    mag_e = _magnitude(_fold_channels(estimate), n_fft).reshape(rows, -1)
    mag_r = _magnitude(_fold_channels(reference), n_fft).reshape(rows, -1)
    diff_norm = torch.linalg.vector_norm(mag_r - mag_e, dim=1)
    # A near-silent reference would make the ratio explode; the floor keeps it bounded.
    convergence = diff_norm / torch.linalg.vector_norm(mag_r, dim=1).clamp_min(1e-5)
    log_l1 = (mag_r.log() - mag_e.log()).abs().mean(dim=1)
    return convergence + log_l1


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over several STFT resolutions.

    Each resolution uses a Hann window of ``n_fft`` and hop ``n_fft / 4``. Spectral convergence is
    ‖|Y| − |X|‖_F / ‖|Y|‖_F over the whole batch (one silent example then cannot dominate).
    """

    def __init__(self, fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES) -> None:
        super().__init__()
        if not fft_sizes or any(n < 4 for n in fft_sizes):
            raise ValueError(f"fft_sizes must be a non-empty list of sizes >= 4, got {fft_sizes}")
        self.fft_sizes = tuple(fft_sizes)

    def forward(self, estimate: Tensor, reference: Tensor) -> Tensor:  # [B, C, T] x2 -> []
        if estimate.shape != reference.shape:
            raise ValueError(f"shape mismatch: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
        # STFTs in float32 even under autocast: cuFFT has no bf16, and fp16 loses the quiet bins.
        estimate, reference = estimate.float(), reference.float()
        terms = [_stft_distance(estimate, reference, n, per_example=False) for n in self.fft_sizes]
        return torch.cat(terms).mean()


@torch.no_grad()
def multi_resolution_stft_distance(
    estimate: Tensor,
    reference: Tensor,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    reduction: str = "mean",
) -> Tensor:
    """Evaluation metric: the MR-STFT loss's terms per example (lower is better, 0 = identical).

    Inputs are [T], [C, T] or [B, C, T]; with ``reduction="none"`` the result is [B] (channels of
    one example are pooled), else the batch mean as a 0-d tensor.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shape mismatch: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    while estimate.dim() < 3:  # [T] -> [1, 1, T], [C, T] -> [1, C, T]
        estimate, reference = estimate.unsqueeze(0), reference.unsqueeze(0)
    estimate, reference = estimate.float(), reference.float()
    terms = [_stft_distance(estimate, reference, n, per_example=True) for n in fft_sizes]
    total = torch.stack(terms).mean(dim=0)  # [B]
    return total if reduction == "none" else total.mean()


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB over the last axis (shape [...]).

    Both signals are made zero-mean; the reference is scaled to best fit the estimate, and the
    ratio of that target's energy to the residual's is returned. Higher is better.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shape mismatch: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    estimate = estimate.double() - estimate.double().mean(dim=-1, keepdim=True)
    reference = reference.double() - reference.double().mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (
        reference.square().sum(-1, keepdim=True) + eps
    )
    target = scale * reference
    residual = estimate - target
    ratio = (target.square().sum(-1) + eps) / (residual.square().sum(-1) + eps)
    return (10 * torch.log10(ratio)).float()


def discriminator_hinge_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]
) -> Tensor:
    """Discriminator hinge loss, mean over scales: E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))]."""
    if len(real_logits) != len(fake_logits) or not real_logits:
        raise ValueError("need the same, non-zero number of real and fake logits")
    losses = [
        F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        for real, fake in zip(real_logits, fake_logits, strict=True)
    ]
    return torch.stack(losses).mean()


def generator_hinge_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Adversarial loss for the generator, averaged over scales: E[max(0, 1 − D(x̂))] (EnCodec)."""
    if not fake_logits:
        raise ValueError("need at least one scale's logits")
    return torch.stack([F.relu(1 - fake).mean() for fake in fake_logits]).mean()


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]
) -> Tensor:
    """Mean over scales and layers of ‖D(x) − D(x̂)‖₁ / mean|D(x)| (EnCodec's relative L1).

    Dividing by the real features' mean magnitude weights every layer equally whatever its scale.
    The real features are detached: this loss trains the generator, never the discriminator.
    """
    losses = []
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        for real, fake in zip(real_scale, fake_scale, strict=True):
            real = real.detach()
            losses.append(F.l1_loss(fake, real) / real.abs().mean().clamp_min(1e-8))
    if not losses:
        raise ValueError("no feature maps given")
    return torch.stack(losses).mean()
