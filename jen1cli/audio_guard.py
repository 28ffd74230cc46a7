"""What reading an audio file must survive: special files, absurd headers, corrupt samples, and
sample rates whose exact resampling filter would not fit in memory.

audio.py calls these while it opens and reads; each problem becomes one AudioError line.
"""

from __future__ import annotations

import math
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AudioError(ValueError):
    """A one-line, user-facing message saying what is wrong with an audio file and how to fix it."""


# Audio lives between telephone-band 8 kHz and 768 kHz studio rates; a header outside a generous
# margin around them is corrupt, and resampling from it would be meaningless or take hours.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
# A float file may go above full scale (1.0), but not by 60 dB: such samples are corrupt, and
# resampling or loudness maths would overflow on them.
MAX_ABS_SAMPLE = 1_000.0
# torchaudio's sinc resampler builds a [dst, src + 2 * width] filter table for the reduced ratio
# src:dst. A rate that shares few factors with 48 kHz (44 101 or 11 111 Hz) would need billions of
# entries, so such a rate is read as the nearest rate whose table stays below this size.
MAX_RESAMPLE_TABLE = 1 << 23
MAX_RATE_SHIFT = 0.005  # ... at most 0.5 % away (8.6 cents, a speed-up of 5 ms per second)


def check_regular_file(p: Path, error: type[Exception]) -> None:
    """Refuse pipes, devices and sockets: they block, or can be read only once (jen1 reads a
    file's header before its samples)."""
    mode = p.stat().st_mode
    if not stat.S_ISREG(mode):
        raise error(
            f"{p} is not a regular file (a pipe, device or socket) — save the audio to a file first"
        )


def check_header(p: Path, sample_rate: int, channels: int, error: type[Exception]) -> None:
    """Refuse sample rates no audio has (a corrupt header) before anything is decoded."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise error(
            f"{p} says its sample rate is {sample_rate} Hz, outside what audio uses "
            f"({MIN_SAMPLE_RATE} Hz to {MAX_SAMPLE_RATE // 1000} kHz) — the file is corrupt "
            "or not audio; re-export it"
        )


def check_samples(peak: float, name: str, error: type[Exception]) -> None:
    """Refuse NaN, infinite or absurdly large samples (``peak``: the largest |sample|)."""
    if not math.isfinite(peak):
        raise error(f"{name} contains NaN or infinite samples — re-export it from your DAW")
    if peak > MAX_ABS_SAMPLE:
        raise error(
            f"{name} has samples up to {peak:.3g}, {20 * math.log10(peak):.0f} dB above full "
            "scale: the file is corrupt — re-export it from your DAW"
        )


def _table_size(rate: int, target: int, width: int, rolloff: float) -> int:
    g = math.gcd(rate, target)
    src, dst = rate // g, target // g
    reach = math.ceil(width * src / (min(src, dst) * rolloff))
    return dst * (src + 2 * reach)


def resample_rate(rate: int, target: int, width: int, rolloff: float) -> int:
    """The rate a file recorded at ``rate`` is resampled from: ``rate`` itself, or, where the
    exact filter table would exceed ``MAX_RESAMPLE_TABLE``, the nearest rate whose table fits
    (at most ``MAX_RATE_SHIFT`` away; every multiple of 10 Hz up to 10 kHz and of 100 Hz beyond
    fits, so one always does)."""
    if rate == target or _table_size(rate, target, width, rolloff) <= MAX_RESAMPLE_TABLE:
        return rate
    for step in range(1, math.ceil(rate * MAX_RATE_SHIFT) + 1):
        for candidate in (rate - step, rate + step):
            if _table_size(candidate, target, width, rolloff) <= MAX_RESAMPLE_TABLE:
                return candidate
    raise ValueError(f"no rate near {rate} Hz resamples to {target} Hz with a small filter")


@contextmanager
def quiet_c_stderr() -> Iterator[None]:
    """Silence what C libraries print straight to file descriptor 2 while the block runs.

    libsndfile's MP3 decoder (libmpg123) prints "Note: Illegal Audio-MPEG-Header ..." lines to
    the terminal when it sniffs or decodes a damaged file; jen1's own one-line message says what
    is wrong instead. Python's sys.stderr is flushed first and is untouched otherwise.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to redirect (an embedded interpreter)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
