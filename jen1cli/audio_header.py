"""Opening an audio file and reading its header, with soundfile alone (no torch).

`jen1 inpaint`, `continue`, `remix` and `encode` check their input (it exists, is audio, is not too
long, the --mask spans fit) before the model loads; reading only the header keeps those errors as
fast as the CLI's start-up. audio.py decodes the samples of the files opened here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from jen1cli.audio_guard import AudioError, check_header, check_regular_file, quiet_c_stderr

READ_HINT = "use WAV, FLAC, OGG or MP3, or convert it first (e.g. ffmpeg -i in.m4a out.wav)"


@dataclass(frozen=True)
class AudioInfo:
    """What a file held before conversion; `note` says what loading changed (None: nothing)."""

    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    note: str | None = None


def one_line(error: BaseException) -> str:
    """An exception's reason on one line (libsndfile's own text, without the temp path)."""
    text = getattr(error, "error_string", None) or str(error)
    return " ".join(text.split()) or type(error).__name__


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open an audio file for reading, turning every failure into an AudioError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise AudioError(f"audio file not found: {p} — check the path and spelling")
    if p.is_dir():
        raise AudioError(f"{p} is a folder, not an audio file — give the path of a file inside it")
    check_regular_file(p, AudioError)
    try:
        with quiet_c_stderr():  # libmpg123 prints notes while it sniffs a damaged file
            f = sf.SoundFile(p)
    except (RuntimeError, OSError, TypeError) as e:  # LibsndfileError is a RuntimeError
        raise AudioError(f"cannot read {p} as audio ({one_line(e)}) — {READ_HINT}") from e
    if f.frames <= 0 or f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(f"{p} holds no audio (0 samples) — choose a file that has sound in it")
    try:
        check_header(p, f.samplerate, f.channels, AudioError)
    except AudioError:
        f.close()
        raise
    return f


def info_of(f: sf.SoundFile, note: str | None = None) -> AudioInfo:
    """The AudioInfo of an open file."""
    return AudioInfo(f.samplerate, f.channels, f.frames, f.frames / f.samplerate, note)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read only the header: sample rate, channels, length. Raises AudioError like load_audio."""
    with open_audio(path) as f:
        return info_of(f)
