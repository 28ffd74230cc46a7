"""Seamless loops (``generate(loop=True)``): the latent sampled as a circle, decoded circularly.

Every denoising step sees the loop as a circle (:class:`CircularDenoiser`): in one window with
its end before its start and its start after its end where it fits, in a ring of overlapping
windows where it does not. The audio side (the crossfade that closes the wrap, the
circular padding, where the file begins) is jen1cli/loop.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from jen1cli.loop import close_loop, loop_fade, stretch_loop
from jen1cli.modules.circular_denoiser import CircularDenoiser, circular_indices
from jen1cli.pipeline.base import PipelineBase, SamplingOptions
from jen1cli.progress import ProgressCallback

# Context on each side of a loop sampled as a circle, as a share of the loop: half a loop on
# each side puts every frame in the middle of the music around it. Shorter loops get no more
# (the padding is repeated music, so more only costs time).
CIRCULAR_CONTEXT_SHARE = 0.5
# At least this share of the window on each side (0.5 s of a 10 s window): with less, a loop's
# ends would sit at the window's edges, where the network sees music on one side only.
MIN_CIRCULAR_CONTEXT_SHARE = 0.05
# A loop that leaves less room is covered by a ring of windows, each speaking for the frames at
# least this share of a window from its edges (1 s of 10 s; crossfades of twice that).
RING_CONTEXT_SHARE = 0.1


class LoopTask(PipelineBase):
    """Samples latents that loop end-to-start with no seam and decodes them into a loop."""

    def _loop_latents(
        self, prompts: list[str], frames: int, options: SamplingOptions, callback: ProgressCallback
    ) -> Tensor:
        """Loop latents [B, k, frames], sampled in one piece as a circle (circular_denoiser.py)."""
        k = self.config.unet.latent_channels
        mask = torch.ones(len(prompts), 1, frames, device=self.device)
        zeros = torch.zeros(len(prompts), k, frames, device=self.device)
        context = self._circular_context(frames)
        denoiser = CircularDenoiser(self.model.unet, frames, self.window_frames, context)
        denoiser.to(self.device)  # its index and weights; the U-Net is there already
        return self._denoise(prompts, zeros, mask, False, options, callback, denoiser=denoiser)

    def _circular_context(self, frames: int) -> int:
        """Frames of circular context on each side of a loop of ``frames`` in one window (half a
        loop where the window has room, never under the minimum), or on each side of the
        frames each window of a ring speaks for, where one window cannot hold the loop."""
        least = math.ceil(MIN_CIRCULAR_CONTEXT_SHARE * self.window_frames)
        room = (self.window_frames - frames) // 2
        if room < least:
            return round(RING_CONTEXT_SHARE * self.window_frames)
        return max(least, min(room, round(frames * CIRCULAR_CONTEXT_SHARE)))

    def _decode_loop(self, latents: Tensor, length: int, callback: ProgressCallback) -> Tensor:
        """A circular latent [B, k, T] -> a loop [B, C, length] (see loop.py).

        The circle lasts T whole frames; a ``length`` between two frame counts is reached by
        playing it that little faster or slower (at most half a frame over the loop), so the loop
        is closed where it repeats, not crossfaded with a copy of itself shifted in time.
        """
        total = latents.shape[-1]
        period = total * self.hop_length
        fade = loop_fade(period, self.sample_rate)
        _, context = self.chunking.frames(self.frame_rate)
        after = self.frames_for(period + fade) - total + context
        padded = latents[..., circular_indices(total, context, after, latents.device)]
        start = context * self.hop_length
        audio = self._decode_span(padded, start, start + period + fade, callback)
        return stretch_loop(close_loop(audio, period, fade), length)

    def loop_frames(self, length: int) -> int:
        """Latent frames of a loop of ``length`` samples: the nearest whole number."""
        return max(1, round(length / self.hop_length))
