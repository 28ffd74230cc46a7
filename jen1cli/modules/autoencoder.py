"""Continuous SEANet/EnCodec-style audio autoencoder of JEN-1 §4.1 (no quantiser).

The layer layout, padding arithmetic and norms follow EnCodec's non-causal SEANet (the 48 kHz
model), layer for layer, so that `encodec_weights.autoencoder_from_encodec` can copy its weights
key for key. Lengths: ``encode`` maps N samples to exactly ``ceil(N / hop)`` latent frames, and
``decode(latent, length=N)`` gives back exactly N samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jen1cli.config import AutoencoderConfig

_NORMS = ("time_group_norm", "weight_norm", "none")
_PAD_MODES = ("reflect", "replicate", "circular", "constant")


def _pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """Pad the last axis; reflect padding also works on inputs shorter than the padding."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    # Reflection needs pad < length: append zeros first, reflect, then cut the zeros' share off.
    length = x.shape[-1]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = F.pad(x, (0, extra))
    out = F.pad(x, (left, right), mode="reflect")
    return out[..., : out.shape[-1] - extra]


class PaddedConv1d(nn.Module):
    """Non-causal Conv1d + norm, padded as EnCodec pads: L samples -> ceil(L / stride) frames."""

    def __init__(
        self,
        config: AutoencoderConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        if config.norm == "weight_norm":
            self.conv = nn.utils.parametrizations.weight_norm(self.conv)
        # GroupNorm with one group normalises over channels and time ("time_group_norm").
        self.norm = nn.GroupNorm(1, out_channels) if config.norm == "time_group_norm" else None
        self.stride = stride
        self.pad_mode = config.pad_mode
        # The kernel minus the stride is padded, split with the odd sample on the left.
        self.padding_total = (kernel_size - 1) * dilation + 1 - stride

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, L] -> [B, C_out, ceil(L / stride)]
        # Extra right padding so that the last (partial) stride still yields a frame.
        extra = -x.shape[-1] % self.stride
        right = self.padding_total // 2
        left = self.padding_total - right
        x = self.conv(_pad1d(x, left, right + extra, self.pad_mode))
        return x if self.norm is None else self.norm(x)


class PaddedConvTranspose1d(nn.Module):
    """ConvTranspose1d + norm, trimmed so that T frames become exactly T * stride samples."""

    def __init__(
        self, config: AutoencoderConfig, in_channels: int, out_channels: int, stride: int
    ) -> None:
        super().__init__()
        kernel_size = 2 * stride
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        if config.norm == "weight_norm":
            self.conv = nn.utils.parametrizations.weight_norm(self.conv)
        self.norm = nn.GroupNorm(1, out_channels) if config.norm == "time_group_norm" else None
        padding_total = kernel_size - stride
        self.trim_right = padding_total // 2
        self.trim_left = padding_total - self.trim_right

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, T] -> [B, C_out, T * stride]
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return x[..., self.trim_left : x.shape[-1] - self.trim_right]


class ResidualLSTM(nn.Module):
    """Stacked LSTM over time with a residual connection, on [B, C, T] tensors."""

    def __init__(self, channels: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, num_layers)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T]
        y = x.permute(2, 0, 1)  # [T, B, C]
        return (self.lstm(y)[0] + y).permute(1, 2, 0)


class ResidualBlock(nn.Module):
    """SEANet residual unit: ELU, dilated conv to C/compress, ELU, 1x1 conv back, plus a skip."""

    def __init__(self, config: AutoencoderConfig, channels: int, dilation: int) -> None:
        super().__init__()
        hidden = channels // config.compress
        k = config.residual_kernel_size
        self.block = nn.ModuleList(
            [
                nn.ELU(),
                PaddedConv1d(config, channels, hidden, k, dilation=dilation),
                nn.ELU(),
                PaddedConv1d(config, hidden, channels, 1),
            ]
        )
        self.shortcut: nn.Module = (
            PaddedConv1d(config, channels, channels, 1) if config.conv_shortcut else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = x
        for layer in self.block:
            y = layer(y)
        return self.shortcut(x) + y


def _lstm(channels: int, num_layers: int) -> nn.Module:
    # An Identity keeps the layer indices (and so EnCodec's weight names) when the LSTM is off.
    return ResidualLSTM(channels, num_layers) if num_layers > 0 else nn.Identity()


class Encoder(nn.Module):
    """SEANet encoder: [B, audio_channels, N] -> [B, latent_dim, ceil(N / hop)]."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = config.base_channels
        layers: list[nn.Module] = [
            PaddedConv1d(config, config.audio_channels, c, config.kernel_size)
        ]
        for ratio in reversed(config.ratios):
            for j in range(config.residual_layers):
                layers.append(ResidualBlock(config, c, config.dilation_growth_rate**j))
            layers += [nn.ELU(), PaddedConv1d(config, c, 2 * c, 2 * ratio, stride=ratio)]
            c *= 2
        layers += [
            _lstm(c, config.lstm_layers),
            nn.ELU(),
            PaddedConv1d(config, c, config.latent_dim, config.last_kernel_size),
        ]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Decoder(nn.Module):
    """SEANet decoder: [B, latent_dim, T] -> [B, audio_channels, T * hop]."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = config.base_channels * 2 ** len(config.ratios)
        layers: list[nn.Module] = [
            PaddedConv1d(config, config.latent_dim, c, config.kernel_size),
            _lstm(c, config.lstm_layers),
        ]
        for ratio in config.ratios:
            layers += [nn.ELU(), PaddedConvTranspose1d(config, c, c // 2, ratio)]
            c //= 2
            for j in range(config.residual_layers):
                layers.append(ResidualBlock(config, c, config.dilation_growth_rate**j))
        layers += [
            nn.ELU(),
            PaddedConv1d(config, c, config.audio_channels, config.last_kernel_size),
        ]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


@dataclass
class AutoencoderOutput:
    """What ``Autoencoder.forward`` returns."""

    audio: Tensor  # [B, C, N] reconstruction, the input's length
    latent: Tensor  # [B, D, T] encoder output, before masking
    latent_mask: Tensor  # [B, T] bool, True where the frame was zeroed before decoding


def mask_latent_frames(
    latent: Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Zero each latent frame independently with probability p (§4.1); returns (masked, mask)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"mask probability must be in [0, 1], got {p}")
    batch, _, frames = latent.shape
    # Draw on the generator's device (a CPU generator may drive a GPU latent).
    device = generator.device if generator is not None else latent.device
    mask = (torch.rand(batch, frames, generator=generator, device=device) < p).to(latent.device)
    return latent.masked_fill(mask[:, None, :], 0.0), mask


def check_audio(audio: Tensor, channels: int) -> None:
    """Refuse anything but non-empty audio [B, channels, N] (every codec's encode input)."""
    if audio.ndim != 3 or audio.shape[1] != channels:
        raise ValueError(f"expected audio [B, {channels}, N], got {tuple(audio.shape)}")
    if audio.shape[-1] < 1:
        raise ValueError("cannot encode empty audio")


def masked_reconstruction(codec: nn.Module, audio: Tensor) -> AutoencoderOutput:
    """Encode, zero ``latent_mask_prob`` of the frames in training mode only (§4.1), decode."""
    latent = codec.encode(audio)
    p = codec.config.latent_mask_prob
    if codec.training and p > 0:
        masked, mask = mask_latent_frames(latent, p)
    else:
        masked = latent
        mask = torch.zeros(
            latent.shape[0], latent.shape[-1], dtype=torch.bool, device=latent.device
        )
    return AutoencoderOutput(codec.decode(masked, audio.shape[-1]), latent, mask)


def _check_config(config: AutoencoderConfig) -> None:
    if config.norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {config.norm!r}")
    if config.pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {config.pad_mode!r}")
    if not config.ratios or any(r < 1 for r in config.ratios):
        raise ValueError(f"ratios must be positive integers, got {config.ratios}")
    if config.base_channels < config.compress or config.base_channels % config.compress:
        raise ValueError("base_channels must be a multiple of compress")
    if config.lstm_layers < 0 or config.residual_layers < 0:
        raise ValueError("lstm_layers and residual_layers must be >= 0")
    if not 0.0 <= config.latent_mask_prob < 1.0:
        raise ValueError(f"latent_mask_prob must be in [0, 1), got {config.latent_mask_prob}")


class Autoencoder(nn.Module):
    """Masked continuous autoencoder (§4.1): audio [B, C, N] <-> latent [B, D, ceil(N / hop)].

    In training mode ``forward`` zeroes ``config.latent_mask_prob`` of the latent frames before
    the decoder, so that it learns to reconstruct from corrupted latents (the paper's
    "noise-robust" decoder); in eval mode nothing is masked.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.config.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` samples: always ``ceil(num_samples / hop)``."""
        return math.ceil(num_samples / self.hop_length)

    def encode(self, audio: Tensor) -> Tensor:
        """Encode audio [B, C, N] to a latent [B, latent_dim, ceil(N / hop)]."""
        check_audio(audio, self.config.audio_channels)
        # Every strided conv pads its input to a multiple of its stride, so a partial last hop
        # still becomes a frame: N samples -> ceil(N / hop) frames with no padding here.
        return self.encoder(audio)

    def decode(self, latent: Tensor, length: int | None = None) -> Tensor:
        """Decode a latent [B, D, T] to audio [B, C, length or T * hop]."""
        if latent.ndim != 3 or latent.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"expected latent [B, {self.config.latent_dim}, T], got {tuple(latent.shape)}"
            )
        full = latent.shape[-1] * self.hop_length
        if length is not None and not 0 < length <= full:
            raise ValueError(f"length must be in 1..{full} for {latent.shape[-1]} frames")
        audio = self.decoder(latent)  # [B, C, T * hop]
        # The tail beyond `length` is what the encoder's stride padding added.
        return audio if length is None else audio[..., :length]

    def forward(self, audio: Tensor) -> AutoencoderOutput:
        """Reconstruct audio [B, C, N]; latent frames are masked only in training mode."""
        return masked_reconstruction(self, audio)
