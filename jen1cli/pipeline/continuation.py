"""Continuation: given audio, then new music that follows it, rolled out window by window."""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.audio import splice
from jen1cli.pipeline.base import PipelineBase, SamplingOptions
from jen1cli.progress import ProgressCallback, no_progress
from jen1cli.span_loudness import match_continuation


class ContinueTask(PipelineBase):
    """``continue_``: the input's latents are the known prefix of a causal rollout (§4.3)."""

    def continue_(
        self,
        audio: Tensor,
        seconds: float,
        prompt: str = "",
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Return ``audio`` [C, N] then ``seconds`` of new music, rolled out window by window."""
        options = options or SamplingOptions()
        n = audio.shape[-1]
        total = n + round(seconds * self.sample_rate)
        prefix = self.encode(audio[None], callback)
        latents = self._rollout([prompt], prefix, self.frames_for(total), options, callback)
        # The decoder re-renders the input's last `fade` samples too, so the crossfade into the new
        # music sits in the input's final <= 50 ms; everything before it stays sample-exact.
        fade = min(round(fade_seconds * self.sample_rate), n)
        start = n - fade
        generated = torch.zeros(audio.shape[0], total)
        new = self._decode_span(latents, start, total, callback)[0].cpu()
        generated[:, start:] = match_continuation(new, audio, self.sample_rate)  # its loudness
        extended = torch.cat([audio, generated[:, n:]], dim=-1)
        return splice(extended, generated, [(start, total)], fade)
