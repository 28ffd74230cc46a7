"""Inpainting: regenerate time spans of given audio; everything else stays sample-exact."""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.audio import splice
from jen1cli.pipeline.base import PipelineBase, SamplingOptions
from jen1cli.progress import ProgressCallback, no_progress
from jen1cli.span_loudness import match_spans


class InpaintTask(PipelineBase):
    """``inpaint``: the spans' frames regenerated with the audio around them known (§4.3)."""

    def inpaint(
        self,
        audio: Tensor,
        spans: list[tuple[float, float]],
        prompt: str = "",
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Regenerate time spans (seconds) of ``audio`` [C, N]; the rest stays sample-exact.

        Audio and spans of any length: a span longer than a window is regenerated in steps.
        """
        options = options or SamplingOptions()
        return self._edit_spans(audio, spans, prompt, options, callback, fade_seconds)

    def _edit_spans(
        self,
        audio: Tensor,
        spans: list[tuple[float, float]],
        prompt: str,
        options: SamplingOptions,
        callback: ProgressCallback,
        fade_seconds: float,
        strength: float = 1.0,
    ) -> Tensor:
        """Inpaint (strength 1) or remix the time spans of ``audio`` [C, N]; splice them in,
        each at the loudness of the music around it (span_loudness.py)."""
        n = audio.shape[-1]
        sample_spans = [
            (round(s * self.sample_rate), min(n, round(e * self.sample_rate))) for s, e in spans
        ]
        sample_spans = [(s, e) for s, e in sample_spans if s < e]
        latents = self.encode(audio[None], callback)  # [1, k, T]
        todo = torch.zeros(latents.shape[-1], dtype=torch.bool)
        for s, e in sample_spans:
            todo[s // self.hop_length : self.frames_for(e)] = True
        latents = self._regenerate([prompt], latents, todo, options, callback, strength)
        decoded = torch.zeros_like(audio)
        for s, e in sample_spans:
            decoded[..., s:e] = self._decode_span(latents, s, e)[0].cpu()
        decoded = match_spans(decoded, audio, sample_spans, self.sample_rate)
        fade = round(fade_seconds * self.sample_rate)
        return splice(audio, decoded, sample_spans, fade)
