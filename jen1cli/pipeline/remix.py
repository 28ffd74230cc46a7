"""Remix (audio-to-audio, SDEdit): given audio noised part-way, then denoised with a prompt."""

from __future__ import annotations

import torch
from torch import Tensor

from jen1cli.diffusion.sampling import first_step
from jen1cli.pipeline.base import SamplingOptions
from jen1cli.pipeline.inpaint import InpaintTask
from jen1cli.pipeline.loudness import match_loudness
from jen1cli.progress import ProgressCallback, no_progress


class RemixTask(InpaintTask):
    """``remix``: the whole clip, or with ``spans`` only those (inpainting from a noised start)."""

    def remix(
        self,
        audio: Tensor,
        prompt: str = "",
        strength: float = 0.5,
        spans: list[tuple[float, float]] | None = None,
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Audio-to-audio: ``audio`` [C, N] re-imagined with the prompt, the same length.

        The latent is noised to the step that ``strength`` (0-1) names and denoised from there,
        bidirectionally (SDEdit): at 0 the input comes back as it is, at 1 only its length is
        kept; the lower, the more of its form survives. The result keeps the input's loudness.
        With ``spans`` (seconds) only those are remixed, the rest stays sample-exact (as inpaint).
        """
        if not 0.0 <= strength <= 1.0:  # also refuses NaN
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        options = options or SamplingOptions()
        steps = options.steps or self.config.diffusion.num_inference_steps
        if first_step(strength, steps) == steps:  # no step to run: nothing changes
            return audio.clone()
        if spans is not None:
            return self._edit_spans(audio, spans, prompt, options, callback, fade_seconds, strength)
        latents = self.encode(audio[None], callback)
        everything = torch.ones(latents.shape[-1], dtype=torch.bool)
        latents = self._regenerate([prompt], latents, everything, options, callback, strength)
        remixed = self.decode(latents, audio.shape[-1], callback)[0].cpu()
        return match_loudness(remixed, audio, self.sample_rate)
