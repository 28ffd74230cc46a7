"""The Fourier codec: pitch-aware band energies in, STFT magnitudes out, phase by Griffin-Lim.

A SEANet decoder must learn phase from adversarial training (GPU-days) and its transposed
convolutions leave a comb at the frame rate. This codec is built for small compute instead, after
Vocos: the decoder runs at the latent frame rate with no transposed convolution, predicts the
log-magnitude of ``frames_per_latent`` STFT frames per latent frame, and the waveform comes from
``torch.istft`` with Griffin-Lim phase. The encoder is the fixed `PitchFilterbank` of the mid
(L + R) / 2 and side (L - R) / 2 channels: the notes live in the mid, so it gets most bands, and
the side needs only a coarse envelope for the stereo image. A fixed encoder gives the diffusion
model a latent with the same meaning in every model (like AudioLDM's mel); the learned part is
the decoder, which turns coarse bands back into sharp partials.

Same interface as `Autoencoder`: ``encode`` maps N samples to ``ceil(N / hop)`` frames,
``decode(latent, N)`` gives back exactly N samples, and ``forward`` masks 5 % of the latent frames
in training (§4.1). ``spectral_loss`` is what it trains on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jen1cli.config import AutoencoderConfig
from jen1cli.modules.autoencoder import (
    AutoencoderOutput,
    check_audio,
    mask_latent_frames,
    masked_reconstruction,
)
from jen1cli.modules.pitch_filterbank import PitchFilterbank

SIDE_KNEE_HZ = 200.0  # the side channel's bands: a coarse stereo envelope, not pitch
PHASE_PERIOD = 256  # STFT frames: Griffin-Lim's start phases repeat with this period


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (time) + LayerNorm + pointwise MLP, with a learned residual scale."""

    def __init__(self, dim: int, kernel_size: int = 7, mult: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: Tensor) -> Tensor:  # [B, dim, T]
        y = self.mlp(self.norm(self.depthwise(x).transpose(1, 2)))
        return x + (self.scale * y).transpose(1, 2)


class MagnitudeDecoder(nn.Module):
    """[B, latent_dim, T] -> log-magnitude [B, channels, bins, T * frames_per_latent]."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        dim = config.decoder_dim
        self.channels = config.audio_channels
        self.frames = config.frames_per_latent
        self.bins = config.n_fft // 2 + 1
        self.embed = nn.Conv1d(config.latent_dim, dim, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(config.decoder_layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.channels * self.frames * self.bins)

    def forward(self, latent: Tensor) -> Tensor:
        b, _, t = latent.shape
        h = self.norm(self.blocks(self.embed(latent)).transpose(1, 2))  # [B, T, dim]
        out = self.head(h).view(b, t, self.channels, self.frames, self.bins)
        return out.permute(0, 2, 4, 1, 3).reshape(b, self.channels, self.bins, t * self.frames)


def to_mid_side(audio: Tensor) -> Tensor:
    """[B, 2, N] left/right -> [B, 2, N] mid/side; mono passes through."""
    if audio.shape[1] == 1:
        return audio
    left, right = audio[:, 0], audio[:, 1]
    return torch.stack([(left + right) / 2, (left - right) / 2], dim=1)


def from_mid_side(audio: Tensor) -> Tensor:
    """Inverse of `to_mid_side`."""
    if audio.shape[1] == 1:
        return audio
    mid, side = audio[:, 0], audio[:, 1]
    return torch.stack([mid + side, mid - side], dim=1)


def griffin_lim(magnitude: Tensor, n_fft: int, hop: int, length: int, iters: int) -> Tensor:
    """Fast Griffin-Lim (momentum 0.99) from [B, bins, F] magnitudes to [B, length] audio.

    Phase starts random but from a fixed seed, so the result is deterministic: the same latent
    always decodes to the same samples (seeded generations stay reproducible). Not at zero: equal
    phases in every frame add up to a pulse train at the frame rate, which Griffin-Lim only slowly
    unlearns (a tone decoded 8 Hz sharp in 16 iterations) and which is a frame-rate comb.
    """
    window = torch.hann_window(n_fft, device=magnitude.device, dtype=magnitude.dtype)

    def istft(spec: Tensor) -> Tensor:
        return torch.istft(spec, n_fft, hop, window=window, length=length)

    def stft(x: Tensor) -> Tensor:
        return torch.stft(x, n_fft, hop, window=window, pad_mode="constant", return_complex=True)

    # Frame f starts from column f % PHASE_PERIOD of one fixed table, so a piece decoded on its own
    # (a chunk of a long file) starts from the same phases as in the whole, if it begins on a
    # multiple of the period (FourierAutoencoder.frame_alignment).
    generator = torch.Generator().manual_seed(0)
    bins, frames = magnitude.shape[-2:]
    table = torch.rand(bins, PHASE_PERIOD, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * table[:, torch.arange(frames) % PHASE_PERIOD].expand(magnitude.shape)
    angles = torch.polar(torch.ones_like(phase), phase).to(magnitude.device)
    angles = angles.to(torch.complex128 if magnitude.dtype == torch.float64 else torch.complex64)
    previous = torch.zeros_like(angles)
    momentum = 0.99
    for _ in range(iters):
        rebuilt = stft(istft(magnitude * angles))
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp_min(1e-16)
        previous = rebuilt
    return istft(magnitude * angles)


class FourierAutoencoder(nn.Module):
    """Masked continuous codec (§4.1) with a fixed pitch-aware encoder and a Fourier decoder."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        sr, hop = config.sample_rate, config.hop_length
        ffts = tuple(config.analysis_ffts)
        self.mid_bands = PitchFilterbank(config.mid_bands, sr, hop, ffts)
        self.side_bands = (
            PitchFilterbank(config.side_bands, sr, hop, ffts, knee_hz=SIDE_KNEE_HZ)
            if config.side_bands
            else None
        )
        self.decoder = MagnitudeDecoder(config)
        window = torch.hann_window(config.n_fft, device="cpu")  # cpu: see PitchFilterbank
        self.register_buffer("window", window, persistent=False)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_alignment(self) -> int:
        """Latent frames a separately decoded piece must start on a multiple of (to match)."""
        return PHASE_PERIOD

    @property
    def stft_hop(self) -> int:
        return self.config.hop_length // self.config.frames_per_latent

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def encode(self, audio: Tensor) -> Tensor:
        """Audio [B, C, N] -> latent [B, mid_bands + side_bands, ceil(N / hop)]."""
        check_audio(audio, self.config.audio_channels)
        ms = to_mid_side(audio.float())
        parts = [self.mid_bands(ms[:, 0])]
        if self.side_bands is not None:
            parts.append(self.side_bands(ms[:, 1]))
        # Natural-log energies are about -25 (silence) .. 0 (loud): centre and scale them to O(1)
        # so that the 5 % masked frames (zeros) read as "average", not as a loud burst.
        return (torch.cat(parts, dim=1) - self.config.latent_offset) / self.config.latent_scale

    def log_magnitude(self, latent: Tensor) -> Tensor:
        """Latent [B, D, T] -> predicted log |STFT| of mid/side, [B, C, bins, T * frames]."""
        if latent.ndim != 3 or latent.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"expected latent [B, {self.config.latent_dim}, T], got {tuple(latent.shape)}"
            )
        return self.decoder(latent)

    def decode(self, latent: Tensor, length: int | None = None) -> Tensor:
        """Latent [B, D, T] -> audio [B, C, length or T * hop] (Griffin-Lim phase)."""
        full = latent.shape[-1] * self.hop_length
        if length is not None and not 0 < length <= full:
            raise ValueError(f"length must be in 1..{full} for {latent.shape[-1]} frames")
        log_mag = self.log_magnitude(latent).float()
        b, c, bins, frames = log_mag.shape
        # istft with centred frames wants one frame more than length / hop; the last frame
        # repeats (it only shapes the tail that the stride padding added).
        magnitude = torch.cat([log_mag, log_mag[..., -1:]], dim=-1).clamp(max=12.0).exp()
        audio = griffin_lim(
            magnitude.reshape(b * c, bins, frames + 1),
            self.config.n_fft,
            self.stft_hop,
            full,
            self.config.griffin_lim_iters,
        ).view(b, c, full)
        audio = from_mid_side(audio)
        return audio if length is None else audio[..., :length]

    def target_magnitude(self, audio: Tensor) -> Tensor:
        """True |STFT| of the mid/side channels, aligned with `log_magnitude`'s frames."""
        b, c, n = audio.shape
        frames = self.num_frames(n) * self.config.frames_per_latent
        padded = F.pad(audio.float(), (0, frames * self.stft_hop - n))
        spec = torch.stft(
            to_mid_side(padded).reshape(b * c, -1),
            self.config.n_fft,
            self.stft_hop,
            window=self.window,
            pad_mode="constant",  # as Griffin-Lim's STFT; reflection fails on very short clips
            return_complex=True,
        )[..., :frames]
        return spec.abs().view(b, c, spec.shape[-2], frames)

    def spectral_loss(self, audio: Tensor, latent_mask_prob: float | None = None) -> dict:
        """The training losses on audio [B, C, N]: log-magnitude L1 and spectral convergence.

        The log L1's floor is 30 dB under each clip's mean magnitude, so the decoder spends
        itself on what is heard, not on the noise floor; spectral convergence (relative
        Frobenius error of the linear magnitudes) weighs the loud partials that carry the notes.
        """
        p = self.config.latent_mask_prob if latent_mask_prob is None else latent_mask_prob
        latent = self.encode(audio)
        if p > 0:
            latent, _ = mask_latent_frames(latent, p)
        predicted = self.log_magnitude(latent).float()
        target = self.target_magnitude(audio)
        floor = 10 ** (-30 / 20) * target.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        estimate = predicted.clamp(max=12.0).exp()
        log_l1 = (torch.log(estimate + floor) - torch.log(target + floor)).abs().mean()
        convergence = torch.linalg.vector_norm(estimate - target, dim=(2, 3)) / (
            torch.linalg.vector_norm(target, dim=(2, 3)).clamp_min(1e-6)
        )
        return {"log_magnitude": log_l1, "convergence": convergence.mean()}

    def forward(self, audio: Tensor, losses: bool = False) -> AutoencoderOutput | dict:
        """Reconstruct audio [B, C, N]; latent frames are masked only in training mode.

        ``losses=True`` returns `spectral_loss` instead, through ``forward`` so that a DDP
        wrapper sees the call and averages the gradients.
        """
        if losses:
            return self.spectral_loss(audio)
        return masked_reconstruction(self, audio)


def _check_config(config: AutoencoderConfig) -> None:
    if config.audio_channels not in (1, 2):
        raise ValueError("the istft decoder takes mono or stereo audio")
    if config.audio_channels == 1 and config.side_bands:
        raise ValueError("mono audio has no side channel: set side_bands to 0")
    if config.mid_bands + config.side_bands != config.latent_dim:
        raise ValueError(
            f"latent_dim ({config.latent_dim}) must equal mid_bands + side_bands "
            f"({config.mid_bands} + {config.side_bands})"
        )
    if config.hop_length % config.frames_per_latent:
        raise ValueError("the hop must be a multiple of frames_per_latent")
    if not 0.0 <= config.latent_mask_prob < 1.0:
        raise ValueError(f"latent_mask_prob must be in [0, 1), got {config.latent_mask_prob}")
