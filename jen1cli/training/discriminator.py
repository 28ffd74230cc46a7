"""Multi-scale STFT discriminator (EnCodec's MS-STFTD), used to train the autoencoder (§4.1).

Each scale takes the complex STFT of the waveform at one resolution, stacks real and imaginary
parts of every audio channel as image channels ([B, 2C, frames, freq]), and runs a small 2D conv
stack that strides along frequency only and dilates along time. It returns one logit map per
scale and every intermediate activation, for the feature-matching loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class STFTDiscriminatorConfig:
    """Shape of the MS-STFTD. Defaults are EnCodec's (5 scales, 32 filters)."""

    audio_channels: int = 2
    n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)  # hop = n_fft / 4, window = n_fft
    filters: int = 32
    max_filters: int = 1024
    filters_scale: int = 1  # the width grows by this factor per dilated layer
    dilations: tuple[int, ...] = (1, 2, 4)  # along time, one strided conv each
    kernel_size: tuple[int, int] = (3, 9)  # (time, frequency)
    negative_slope: float = 0.2


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """Padding that keeps the size of a stride-1 axis: (k − 1)·d / 2 per axis."""
    return tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]


class STFTDiscriminator(nn.Module):
    """One scale: complex STFT of one resolution → 2D convs → logits [B, 1, frames, freq']."""

    def __init__(self, config: STFTDiscriminatorConfig, n_fft: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.negative_slope = config.negative_slope
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        kernel = config.kernel_size
        in_ch = 2 * config.audio_channels  # real + imaginary of each audio channel
        width = config.filters
        layers = [nn.Conv2d(in_ch, width, kernel, padding=_same_padding(kernel, (1, 1)))]
        for i, dilation in enumerate(config.dilations):
            out = min(config.filters_scale ** (i + 1) * config.filters, config.max_filters)
            # Stride 2 along frequency only: time resolution is what the dilations widen.
            layers.append(
                nn.Conv2d(
                    width,
                    out,
                    kernel,
                    stride=(1, 2),
                    dilation=(dilation, 1),
                    padding=_same_padding(kernel, (dilation, 1)),
                )
            )
            width = out
        layers.append(nn.Conv2d(width, width, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(conv) for conv in layers)
        self.conv_post = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, audio: Tensor) -> Tensor:  # [B, C, T] -> [B, 2C, frames, freq]
        batch, channels, length = audio.shape
        spec = torch.stft(
            audio.reshape(batch * channels, length).float(),
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            normalized=True,  # keeps every scale's input at a similar magnitude
            return_complex=True,
        )  # [B·C, freq, frames]
        spec = torch.view_as_real(spec).reshape(batch, channels, *spec.shape[1:], 2)
        # [B, C, freq, frames, 2] -> [B, C, 2, frames, freq] -> [B, 2C, frames, freq]
        spec = spec.permute(0, 1, 4, 3, 2)
        return spec.reshape(batch, 2 * channels, spec.shape[3], spec.shape[4])

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.spectrogram(audio).to(self.conv_post.weight.dtype)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.negative_slope)
            features.append(x)
        return self.conv_post(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """One `STFTDiscriminator` per FFT size; ``forward`` returns (logits, features) per scale."""

    def __init__(self, config: STFTDiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or STFTDiscriminatorConfig()
        if not self.config.n_ffts:
            raise ValueError("n_ffts must name at least one FFT size")
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(self.config, n_fft) for n_fft in self.config.n_ffts
        )

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """[B, C, T] -> logits [[B, 1, frames_k, freq_k] per scale], features [[maps] per scale]."""
        if audio.dim() != 3 or audio.shape[1] != self.config.audio_channels:
            raise ValueError(
                f"expected audio [B, {self.config.audio_channels}, T], got {tuple(audio.shape)}"
            )
        logits, features = [], []
        for disc in self.discriminators:
            scale_logits, scale_features = disc(audio)
            logits.append(scale_logits)
            features.append(scale_features)
        return logits, features
