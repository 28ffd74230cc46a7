"""Text-to-music: a clip per prompt, any length, optionally a seamless loop."""

from __future__ import annotations

from torch import Tensor

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

        ``loop``: each clip plays end-to-start with no seam, cut where it was sampled
        (``jen1 generate --loop`` then begins the file at :func:`jen1cli.loop.steadiest_start`).
        """
        options = options or SamplingOptions()
        length = round(seconds * self.sample_rate)
        if loop:
            latents = self._loop_latents(prompts, self.loop_frames(length), options, callback)
            return self._decode_loop(latents, length, callback)
        latents = self._rollout(prompts, None, self.frames_for(length), options, callback)
        return self.decode(latents, length, callback)
