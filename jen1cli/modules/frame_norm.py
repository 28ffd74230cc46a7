"""Per-frame normalisation for the omnidirectional U-Net: causal in both modes (§4.2).

nn.GroupNorm on [B, C, T] averages over time, so a future frame would shift the normalisation of a
past one. Every norm here takes its statistics from ONE frame's channels, so both modes normalise
identically and can share weights. Which channels matters (issue 16): group statistics over a
few channels (``"group"``: 96 channels in 32 groups of 3) project each group onto a sphere and keep
about one of every three degrees of freedom per frame, so the network can not learn the identity.
``"layer"`` and ``"rms"`` take their statistics over all of a frame's channels and remove one scale
(and, for layer, one offset) per frame, which keeps the frame's information.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FrameNormKind = Literal["group", "layer", "rms"]
FRAME_NORMS: tuple[str, ...] = ("group", "layer", "rms")


class FrameGroupNorm(nn.Module):
    """Group norm whose statistics come from the channel groups of ONE frame (the legacy norm)."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T]
        b, c, t = x.shape
        # [B, C, T] -> [B*T, C]: group_norm with no spatial dims reduces over (C / groups) only.
        h = x.transpose(1, 2).reshape(b * t, c)
        h = F.group_norm(h, self.groups, self.weight, self.bias, self.eps)
        return h.reshape(b, t, c).transpose(1, 2)


class FrameLayerNorm(nn.LayerNorm):
    """Layer norm over all channels of each frame (the transformer's norm, on [B, C, T])."""

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FrameRMSNorm(nn.Module):
    """RMS norm over all channels of each frame: only the frame's scale is removed, not its mean."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T]
        # Statistics in fp32: under bf16 autocast a mean of squares over hundreds of channels
        # would lose the precision the scale needs.
        rms = x.float().pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * rms).to(x.dtype) * self.weight[:, None] + self.bias[:, None]


def frame_norm(kind: str, channels: int, groups: int) -> nn.Module:
    """The per-frame norm ``kind`` names (``groups`` is read by ``"group"`` only)."""
    if kind == "group":
        return FrameGroupNorm(groups, channels)
    if kind == "layer":
        return FrameLayerNorm(channels, eps=1e-5)
    if kind == "rms":
        return FrameRMSNorm(channels)
    raise ValueError(f"unknown unet.norm {kind!r}; choose one of: {', '.join(FRAME_NORMS)}")
