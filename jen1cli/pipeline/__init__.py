"""Jen1Pipeline: text-to-music, inpainting, continuation, remix and loops on tensors, any length.

One module per task, each readable on its own: generate.py, inpaint.py, continuation.py,
remix.py and looping.py. They build on base.py, the sampling code they share (encode and decode
through the autoencoder in chunks, see long_audio.py; one guided window; the causal rollout and
the bidirectional regeneration over windows.py's windows).
"""

from __future__ import annotations

from jen1cli.pipeline.base import PipelineBase, SamplingOptions
from jen1cli.pipeline.continuation import ContinueTask
from jen1cli.pipeline.generate import GenerateTask
from jen1cli.pipeline.loudness import match_loudness
from jen1cli.pipeline.remix import RemixTask
from jen1cli.pipeline.windows import (
    MAX_MASKED_SHARE,
    ROLLOUT_CONTEXT,
    regeneration_windows,
    rollout_windows,
)

__all__ = [
    "MAX_MASKED_SHARE",
    "ROLLOUT_CONTEXT",
    "Jen1Pipeline",
    "PipelineBase",
    "SamplingOptions",
    "match_loudness",
    "regeneration_windows",
    "rollout_windows",
]


class Jen1Pipeline(GenerateTask, RemixTask, ContinueTask):
    """Runs a :class:`Jen1Model` for the three tasks of the paper (and remix) on 48 kHz stereo.

    ``generate`` (with ``loop``), ``inpaint``, ``continue_`` and ``remix``, each in its own task
    module; ``encode``, ``decode`` and the model's sizes come from :class:`PipelineBase`.
    ``chunking`` sets how audio longer than a chunk is cut for the autoencoder.
    """
