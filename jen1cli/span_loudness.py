"""Regenerated spans at the loudness of the music around them: inpaint, remix --mask, continue.

The model's output level follows its training data, not the song being edited, so a regenerated
span can come out far louder or quieter than the recording around it (an inpainted real song
went from -15.5 to -10.0 LUFS). Each span is therefore brought to the BS.1770 integrated loudness
of its surroundings: the kept audio within ``SURROUND_SECONDS`` before and after it (other
regenerated spans left out). A continuation is matched to the input's last ``SURROUND_SECONDS``.
The gain is capped so the span's true peak stays at most the surroundings' (or -1 dBFS, if higher):
where that ceiling wins, a look-ahead limiter tames the peaks (audio.loudness_normalize).

A span keeps some of its own dynamics: where the original passage was louder or quieter than its
surroundings (a thunder clap, a quiet bridge), the target moves towards the original's loudness by
at most ``DYNAMICS_LU``. And the edit should not move the song's level: where the file's
integrated loudness would still move by more than ``FILE_TOLERANCE_LU``, every span's target is
shifted by one common offset that brings it back (found by bisection). Matching to the
surroundings alone moved one of 39 real recordings by 1.1 LU (a thunder clap inpainted away).
Neither shift takes a span further than ``SPAN_CAP_LU`` from its surroundings.

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
DYNAMICS_LU = 1.5  # how far a span may follow its original passage away from its surroundings
FILE_TOLERANCE_LU = 0.5  # a smaller move of the file's loudness is left alone
SPAN_CAP_LU = 1.8  # no span further than this from its surroundings (the goal: within 2 LU)
_BISECTIONS = 7  # the common offset to within 2 * SPAN_CAP_LU / 2**7 = 0.03 LU
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
    return _to_level(span, target, true_peak_db(reference, sample_rate), sample_rate)


def _to_level(span: Tensor, target: float, peak_db: float, sample_rate: int) -> Tensor:
    if not math.isfinite(target) or target < _SILENT_LUFS:
        return span
    ceiling = max(-1.0, peak_db)
    with warnings.catch_warnings():  # an unreachable target: the peak ceiling wins, as it should
        warnings.simplefilter("ignore")
        return loudness_normalize(span, sample_rate, target, true_peak_db=ceiling)


def original_shift(around: float, original: Tensor, sample_rate: int) -> float:
    """How far (LU) a span's target follows its ``original`` passage away from ``around``."""
    own = integrated_loudness(original, sample_rate)
    if not math.isfinite(own) or own < _SILENT_LUFS or not math.isfinite(around):
        return 0.0
    return max(-DYNAMICS_LU, min(DYNAMICS_LU, own - around))


def match_spans(
    decoded: Tensor, audio: Tensor, spans: Sequence[tuple[int, int]], sample_rate: int
) -> Tensor:
    """``decoded`` [C, N] with each span [start, end) of ``spans`` (samples) brought to the
    loudness of its surroundings in ``audio`` [C, N] (or of its own original audio there),
    following the original passage by up to ``DYNAMICS_LU`` and shifted together where the
    file's loudness would otherwise move (module docstring)."""
    plans = []  # (start, end, surroundings' LUFS, the original's shift, peak ceiling)
    for i, (s, e) in enumerate(spans):
        original = audio[..., s:e]
        reference = surroundings(audio, spans, i, sample_rate)
        peak = true_peak_db(original, sample_rate)
        if _audible(reference, sample_rate):
            peak = max(peak, true_peak_db(reference, sample_rate))
        else:
            reference = original
        around = integrated_loudness(reference, sample_rate)
        plans.append((s, e, around, original_shift(around, original, sample_rate), peak))

    whole = audio.clone()  # the song with the spans as rendered last: what the file will hold

    def render(offset: float) -> None:
        for s, e, around, shift, peak in plans:
            target = around + max(-SPAN_CAP_LU, min(SPAN_CAP_LU, shift + offset))
            whole[..., s:e] = _to_level(decoded[..., s:e], target, peak, sample_rate)

    def file_change() -> float:
        return integrated_loudness(whole, sample_rate) - before

    render(0.0)
    before = integrated_loudness(audio, sample_rate)
    moved = file_change() if plans and math.isfinite(before) and before >= _SILENT_LUFS else 0.0
    if math.isfinite(moved) and abs(moved) > FILE_TOLERANCE_LU:
        # The file's loudness grows with the offset: search the side that undoes the move.
        lo, hi = (0.0, 2 * SPAN_CAP_LU) if moved < 0 else (-2 * SPAN_CAP_LU, 0.0)
        best, best_moved = 0.0, moved
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            render(mid)
            candidate = file_change()
            if abs(candidate) < abs(best_moved):
                best, best_moved = mid, candidate
            lo, hi = (mid, hi) if candidate < 0 else (lo, mid)
        render(best)
    out = decoded.clone()
    for s, e in spans:
        out[..., s:e] = whole[..., s:e]
    return out


def match_continuation(new: Tensor, audio: Tensor, sample_rate: int) -> Tensor:
    """The new music ``new`` [C, N] at the loudness of the last ``SURROUND_SECONDS`` of the
    input ``audio`` [C, M] (of all of it, if that end is silent)."""
    reference = audio[..., -round(SURROUND_SECONDS * sample_rate) :]
    if not _audible(reference, sample_rate):
        reference = audio
    return match_to(new, reference, sample_rate)
