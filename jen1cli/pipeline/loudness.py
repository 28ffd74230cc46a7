"""Loudness matching for the tasks that re-render given audio (remix, and remixed spans)."""

from __future__ import annotations

import math
import warnings

from torch import Tensor

from jen1cli.audio import integrated_loudness, loudness_normalize, true_peak_db


def match_loudness(audio: Tensor, reference: Tensor, sample_rate: int) -> Tensor:
    """``audio`` [C, N] brought to the integrated loudness of ``reference`` [C, M].

    Its true peak stays at most the reference's (or -1 dBFS, if higher). A silent reference
    leaves ``audio`` as it is.
    """
    target = integrated_loudness(reference, sample_rate)
    if not math.isfinite(target) or target < -70.0:
        return audio
    ceiling = max(-1.0, true_peak_db(reference, sample_rate))
    with warnings.catch_warnings():  # an unreachable target: the peak ceiling wins, as it should
        warnings.simplefilter("ignore")
        return loudness_normalize(audio, sample_rate, target, true_peak_db=ceiling)
