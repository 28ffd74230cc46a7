"""Seamless loops (``generate(loop=True)``): the latent's wrap inpainted, then decoded circularly.

The audio side (the crossfade that closes the wrap, the circular padding) is jen1cli/loop.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.loop import LOOP_SEAM_SHARE, close_loop, loop_fade, wrap_indices
from jen1cli.pipeline.base import PipelineBase, SamplingOptions
from jen1cli.progress import ProgressCallback


class LoopTask(PipelineBase):
    """Turns generated latents into a loop that plays end-to-start with no seam."""

    def _close_latent_loop(
        self,
        prompts: list[str],
        latents: Tensor,
        options: SamplingOptions,
        callback: ProgressCallback,
    ) -> Tensor:
        """Wrap-around inpainting: the frames around the end-to-start wrap of ``latents``
        [B, k, T] regenerated with both sides known, so the music runs on across it."""
        total = latents.shape[-1]
        shift = total // 2  # rolled by half, the wrap sits in the middle
        half = max(1, round(min(total, self.window_frames) * LOOP_SEAM_SHARE / 2))
        todo = torch.zeros(total, dtype=torch.bool)
        todo[max(0, shift - half) : shift + half] = True
        rolled = latents.roll(shift, dims=-1)
        return self._regenerate(prompts, rolled, todo, options, callback).roll(-shift, dims=-1)

    def _decode_loop(self, latents: Tensor, length: int, callback: ProgressCallback) -> Tensor:
        """A circular latent [B, k, T] -> a loop [B, C, length] (see loop.py)."""
        fade = loop_fade(length, self.sample_rate)
        _, context = self.chunking.frames(self.frame_rate)
        total = latents.shape[-1]
        after = self.frames_for(length + fade) - total + context
        padded = latents[..., wrap_indices(total, context, after, latents.device)]
        start = context * self.hop_length
        audio = self._decode_span(padded, start, start + length + fade, callback)
        return close_loop(audio, length, fade)
