"""Seamless loops: audio that plays end-to-start with no seam, whatever the decoder.

Three steps, each closing the wrap at one level. The pipeline regenerates the latent frames around
the wrap with both sides known (wrap-around inpainting), so the music continues across it. The
latent is decoded with circular context (its own end before its start, its start after its end),
so the decoder sees the wrap as any other place. And the decoded audio, which runs on past the
loop's length, is folded back: its overhang is crossfaded into the start, so the last sample flows
into the first exactly as it flows into the overhang (`close_loop`). Mastering then runs on a
circularly padded copy (`master_loop`), so its filters and limiter see no edge either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.audio import master
from jen1cli.long_audio import crossfade

LOOP_SEAM_SHARE = 0.4  # of a window regenerated around the wrap: inside §4.3's 20-80 % masks
LOOP_FADE_SECONDS = 0.25  # the overhang folded into the start
MASTER_PADDING_SECONDS = 2.0  # > the DC filter's and the limiter's memory (< 0.2 s)


def wrap_indices(total: int, before: int, after: int, device=None) -> Tensor:
    """Indices into a circular sequence of ``total``: ``before`` from its end, all, ``after``."""
    return torch.arange(-before, total + after, device=device) % total


def loop_fade(length: int, sample_rate: int) -> int:
    """The overhang folded back into a loop of ``length`` samples: 0.25 s, at most a quarter."""
    return min(round(LOOP_FADE_SECONDS * sample_rate), length // 4)


def close_loop(audio: Tensor, length: int, fade: int) -> Tensor:
    """A loop [..., length] from ``audio`` [..., length + fade] that runs past its end.

    The first ``fade`` samples fade from the overhang (what follows the loop's last sample) into
    the loop's own start: the wrap last -> first is then the continuous step last -> overhang, and
    the fade ends where the start was anyway. Where the overhang repeats the start (a periodic
    decode) nothing changes.
    """
    if audio.shape[-1] != length + fade:
        raise ValueError(f"need {length + fade} samples, got {audio.shape[-1]}")
    out = audio[..., :length].clone()
    if fade:
        out[..., :fade] = crossfade(audio[..., length:], audio[..., :fade])
    return out


def master_loop(audio: Tensor, sample_rate: int, target_lufs: float) -> Tensor:
    """:func:`jen1cli.audio.master` for a loop [C, N]: mastered with its own ends around it, so
    the DC filter and the limiter are in their steady state at the wrap."""
    n = audio.shape[-1]
    pad = round(MASTER_PADDING_SECONDS * sample_rate)
    padded = audio[..., wrap_indices(n, pad, pad, audio.device)]
    return master(padded, sample_rate, target_lufs)[..., pad : pad + n].contiguous()
