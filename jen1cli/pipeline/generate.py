"""Text-to-music: a clip per prompt, any length, optionally a seamless loop."""

from __future__ import annotations

from torch import Tensor

from jen1cli.loop import start_at_steadiest
from jen1cli.pipeline.base import SamplingOptions
from jen1cli.pipeline.looping import LoopTask
from jen1cli.progress import ProgressCallback, no_progress


class GenerateTask(LoopTask):
    """``generate``: a bidirectional first window, then causal windows up to the length."""

    def generate(
        self,
        prompts: list[str],
        seconds: float,
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        loop: bool = False,
    ) -> Tensor:
        """Text-to-music: one clip [B, C, N] per prompt, N = round(seconds * sample_rate).

        ``loop``: each clip plays end-to-start with no seam, and begins where its spectrum is
        steadiest (see loop.py).
        """
        options = options or SamplingOptions()
        length = round(seconds * self.sample_rate)
        frames = self.frames_for(length)
        if loop:
            latents = self._loop_latents(prompts, frames, options, callback)
            return start_at_steadiest(self._decode_loop(latents, length, callback))
        latents = self._rollout(prompts, None, frames, options, callback)
        return self.decode(latents, length, callback)
