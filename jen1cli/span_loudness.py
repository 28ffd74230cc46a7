"""Regenerated spans at the loudness of the music around them: inpaint, remix --mask, continue.

The model's output level follows its training data, not the song being edited, so a regenerated
span can come out far louder or quieter than the recording around it (an inpainted real song
went from -15.5 to -10.0 LUFS). Each span is therefore brought to the BS.1770 integrated loudness
of its surroundings: the kept audio within ``SURROUND_SECONDS`` before and after it (other
regenerated spans left out). A continuation is matched to the input's last ``SURROUND_SECONDS``.
The gain is capped so the span's true peak stays at most the surroundings' (or -1 dBFS, if higher):
where that ceiling wins, a look-ahead limiter tames the peaks (audio.loudness_normalize).

Where the surroundings are silent or absent (a span over the whole file), the span's own original
audio is the reference; where that is silent too, the span is left as generated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from jen1cli.audio import integrated_loudness, loudness_normalize, true_peak_db

SURROUND_SECONDS = 2.0
_SILENT_LUFS = -70.0  # BS.1770's absolute gate


def surroundings(
    audio: Tensor,
    spans: Sequence[tuple[int, int]],
    index: int,
    sample_rate: int,
    seconds: float = SURROUND_SECONDS,
) -> Tensor:
    """The kept audio [C, M] within ``seconds`` on each side of ``spans[index]`` (samples)."""
    n = audio.shape[-1]
    reach = round(seconds * sample_rate)
    start, end = spans[index]
    keep = torch.zeros(n, dtype=torch.bool)
    keep[max(0, start - reach) : start] = True
    keep[end : min(n, end + reach)] = True
    for s, e in spans:
        keep[s:e] = False
    return audio[..., keep]


def _audible(reference: Tensor, sample_rate: int) -> bool:
    return reference.shape[-1] > 0 and integrated_loudness(reference, sample_rate) >= _SILENT_LUFS


def match_to(span: Tensor, reference: Tensor, sample_rate: int) -> Tensor:
    """``span`` [C, N] at the integrated loudness of ``reference`` [C, M], its true peak at most
    the reference's (or -1 dBFS, if higher); unchanged if either is silent."""
    target = integrated_loudness(reference, sample_rate)
    if not math.isfinite(target) or target < _SILENT_LUFS:
        return span
    ceiling = max(-1.0, true_peak_db(reference, sample_rate))
    with warnings.catch_warnings():  # an unreachable target: the peak ceiling wins, as it should
        warnings.simplefilter("ignore")
        return loudness_normalize(span, sample_rate, target, true_peak_db=ceiling)


def match_spans(
    decoded: Tensor, audio: Tensor, spans: Sequence[tuple[int, int]], sample_rate: int
) -> Tensor:
    """``decoded`` [C, N] with each span [start, end) of ``spans`` (samples) brought to the
    loudness of its surroundings in ``audio`` [C, N] (or of its own original audio there)."""
    out = decoded.clone()
    for i, (s, e) in enumerate(spans):
        reference = surroundings(audio, spans, i, sample_rate)
        if not _audible(reference, sample_rate):
            reference = audio[..., s:e]
        out[..., s:e] = match_to(decoded[..., s:e], reference, sample_rate)
    return out


def match_continuation(new: Tensor, audio: Tensor, sample_rate: int) -> Tensor:
    """The new music ``new`` [C, N] at the loudness of the last ``SURROUND_SECONDS`` of the
    input ``audio`` [C, M] (of all of it, if that end is silent)."""
    reference = audio[..., -round(SURROUND_SECONDS * sample_rate) :]
    if not _audible(reference, sample_rate):
        reference = audio
    return match_to(new, reference, sample_rate)
