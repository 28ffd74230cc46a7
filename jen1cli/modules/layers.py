"""Shared layers whose time behaviour is chosen per call: bidirectional or causal (§4.2, Fig. 2).

Every layer here is either time-local (the time embedding; the per-frame norms live in
frame_norm.py) or a convolution whose padding is picked at call time, so ONE set of weights runs
in both modes: centred zero padding (bidirectional) or all zeros in front (unidirectional, "causal
padding", Oord et al. 2016).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ModeConv1d(nn.Conv1d):
    """Conv1d padded per call: centred (bidirectional) or all on the left (causal).

    With stride s and causal padding, output j sees only inputs <= j*s. Output length is
    ceil(T / s) in both modes (the padding totals dilation * (kernel_size - 1)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias
        )

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:  # [B, C, T] -> [B, C', T']
        total = self.dilation[0] * (self.kernel_size[0] - 1)
        left = total if causal else total // 2
        return super().forward(F.pad(x, (left, total - left)))


def timestep_embedding(timestep: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) diffusion steps: [B] -> [B, dim], float32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timestep.device)
        / half
    )
    args = timestep.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """Sinusoid -> MLP: the single time vector that every ResBlock reads (§4.2)."""

    def __init__(self, sinusoid_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(
            nn.Linear(sinusoid_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, timestep: Tensor) -> Tensor:  # [B] -> [B, E]
        emb = timestep_embedding(timestep, self.sinusoid_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class Downsample1d(nn.Module):
    """Strided conv, kernel 2f - 1: bidirectionally it sees the stride window on both sides;
    causally, output j sees inputs <= j*f only (never the rest of its own stride window)."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.conv = ModeConv1d(channels, channels, 2 * factor - 1, stride=factor)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:  # [B, C, T] -> [B, C, T/f]
        return self.conv(x, causal)


class Upsample1d(nn.Module):
    """Nearest repeat then a conv: frame t reads low-res frame floor(t/f), which saw inputs
    <= floor(t/f)*f <= t, so the causal mode stays causal end to end."""

    def __init__(self, channels: int, factor: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.factor = factor
        self.conv = ModeConv1d(channels, channels, kernel_size)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:  # [B, C, T] -> [B, C, T*f]
        return self.conv(x.repeat_interleave(self.factor, dim=-1), causal)
