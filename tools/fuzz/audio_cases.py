"""Mutated audio files for the fuzz harness: a seed file, then one mutation of its bytes or samples.

Seeds are short music-like clips (a chord with a melody and noise hits) written in the formats and
subtypes libsndfile offers, or excerpts of real recordings given with ``--seeds``. Every mutation is
a function of a ``random.Random``, so a case index always rebuilds the same file.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# (extension, libsndfile format, subtype); the rates each one can store are checked when writing.
FORMATS = [
    ("wav", "WAV", "FLOAT"),
    ("wav", "WAV", "PCM_16"),
    ("wav", "WAV", "PCM_24"),
    ("wav", "WAV", "PCM_32"),
    ("wav", "WAV", "PCM_U8"),
    ("wav", "WAV", "DOUBLE"),
    ("wav", "WAV", "ULAW"),
    ("wav", "WAV", "IMA_ADPCM"),
    ("wav", "WAVEX", "PCM_24"),
    ("wav", "RF64", "FLOAT"),
    ("w64", "W64", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("flac", "FLAC", "PCM_24"),
    ("ogg", "OGG", "VORBIS"),
    ("opus", "OGG", "OPUS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
    ("aiff", "AIFF", "PCM_16"),
    ("aiff", "AIFF", "FLOAT"),
    ("caf", "CAF", "PCM_24"),
    ("au", "AU", "PCM_16"),
]
RATES = [8_000, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000]
ODD_RATES = [1, 2, 7, 100, 999, 1_000, 3_000, 11_111, 44_101, 47_999, 48_001, 96_001, 192_000]
ODD_RATES += [352_800, 384_000, 768_000, 768_001, 1_000_003, 2**24, 2**31 - 1]
ODD_CHANNELS = [3, 4, 5, 6, 7, 8, 16, 64, 256, 1024]
SHORT_FRAMES = [0, 1, 2, 3, 319, 320, 321, 479, 480, 481]
SPECIAL_VALUES = {
    "nan_one": None,  # filled in place (below)
    "nan_all": np.nan,
    "inf": np.inf,
    "neg_inf": -np.inf,
    "denormal": 1e-40,
    "tiny_denormal": 1e-45,
    "huge": 1e30,
    "float_max": np.finfo(np.float32).max,
    "silence": 0.0,
    "neg_zero": -0.0,
    "dc_full": 1.0,
    "over_full": 8.0,
}


@dataclass
class AudioSeed:
    """What a seed file is: where it lies and how it was written."""

    path: Path
    ext: str
    fmt: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int


def music(rng: random.Random, seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    """A short music-like clip [N, C]: a triad, a melody of chord tones and noise hits."""
    n = max(1, round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    root = 110.0 * 2 ** (rng.randrange(12) / 12)
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5)) / 3
    melody = np.zeros(n)
    step = max(1, n // 4)
    for i in range(0, n, step):
        f = root * 2 * rng.choice((1.0, 1.26, 1.5, 2.0))
        seg = t[i : i + step] - t[i]
        melody[i : i + step] = np.sin(2 * np.pi * f * seg) * np.exp(-4 * seg)
    np_rng = np.random.default_rng(rng.randrange(2**32))
    hits = np_rng.standard_normal(n) * (np.sin(np.pi * 4 * t) ** 16)
    mono = 0.25 * chord + 0.2 * melody + 0.05 * hits
    out = np.stack([np.roll(mono, 3 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def write_seed(folder: Path, rng: random.Random, real: list[Path]) -> AudioSeed:
    """A seed file in ``folder``: a format from FORMATS (or an excerpt of a real recording)."""
    if real and rng.random() < 0.5:
        return _excerpt(folder, rng, rng.choice(real))
    while True:
        ext, fmt, subtype = rng.choice(FORMATS)
        rate = rng.choice(RATES)
        channels = rng.choice((1, 2, 2, 2, 6)) if fmt in ("WAV", "FLAC", "WAVEX") else 2
        if not (sf.check_format(fmt, subtype) and _writes(fmt, subtype, rate, channels)):
            continue
        path = folder / f"seed.{ext}"
        data = music(rng, rng.uniform(0.3, 1.2), rate, channels)
        try:
            sf.write(path, data, rate, subtype=subtype, format=fmt)
        except (RuntimeError, ValueError, TypeError):  # a rate or layout this format cannot hold
            path.unlink(missing_ok=True)
            continue
        return AudioSeed(path, ext, fmt, subtype, rate, channels, len(data))


def _writes(fmt: str, subtype: str, rate: int, channels: int) -> bool:
    if subtype == "OPUS":
        return rate in (8_000, 16_000, 48_000) and channels <= 2
    if fmt == "MP3":
        return rate in (8_000, 16_000, 22_050, 32_000, 44_100, 48_000) and channels <= 2
    return not (fmt == "OGG" and channels > 2)


def _excerpt(folder: Path, rng: random.Random, source: Path) -> AudioSeed:
    """A real recording: the file itself, byte for byte, if it is small (its own header and
    chunks); else up to 1.2 s of it, in its own format and subtype."""
    info = sf.info(source)
    if source.stat().st_size <= 1 << 20:
        ext = source.suffix.lstrip(".").lower() or "wav"
        path = folder / f"seed.{ext}"
        shutil.copyfile(source, path)
        return AudioSeed(
            path, ext, info.format, info.subtype, info.samplerate, info.channels, info.frames
        )
    frames = min(info.frames, round(1.2 * info.samplerate))
    start = rng.randrange(max(1, info.frames - frames))
    data, rate = sf.read(source, start=start, frames=frames, dtype="float32", always_2d=True)
    ext = source.suffix.lstrip(".").lower() or "wav"
    path = folder / f"seed.{ext}"
    try:
        sf.write(path, data, rate, subtype=info.subtype, format=info.format)
    except (RuntimeError, ValueError, TypeError):  # a subtype libsndfile reads but cannot write
        path = folder / "seed.wav"
        sf.write(path, data, rate, subtype="FLOAT", format="WAV")
        return AudioSeed(path, "wav", "WAV", "FLOAT", rate, data.shape[1], len(data))
    return AudioSeed(path, ext, info.format, info.subtype, rate, data.shape[1], len(data))


# --- mutations ---------------------------------------------------------------------------------
# Each takes (seed, rng, folder) and returns (path of the mutated file, what was done).
Mutation = Callable[[AudioSeed, random.Random, Path], tuple[Path, str]]


def _put(seed: AudioSeed, data: bytes, ext: str | None = None, name: str = "in") -> Path:
    path = seed.path.with_name(f"{name}.{ext or seed.ext}" if (ext or seed.ext) else name)
    path.write_bytes(data)
    seed.path.unlink(missing_ok=True)
    return path


def intact(seed, rng, folder):
    return _put(seed, seed.path.read_bytes()), "intact"


def truncate(seed, rng, folder):
    data = seed.path.read_bytes()
    cut = rng.choice([rng.randrange(0, min(len(data), 64)), rng.randrange(len(data))])
    return _put(seed, data[:cut]), f"truncated at byte {cut} of {len(data)}"


def flip_header(seed, rng, folder):
    data = bytearray(seed.path.read_bytes())
    count = rng.randint(1, 8)
    for _ in range(count):
        data[rng.randrange(min(len(data), 64))] = rng.randrange(256)
    return _put(seed, bytes(data)), f"{count} header bytes changed"


def flip_any(seed, rng, folder):
    data = bytearray(seed.path.read_bytes())
    count = rng.randint(1, 64)
    for _ in range(count):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return _put(seed, bytes(data)), f"{count} bytes changed"


def _chunks(data: bytes) -> dict[bytes, int]:
    """Offsets of the RIFF chunks' bodies (fmt, data) of a WAV file."""
    found, pos = {}, 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        found.setdefault(tag, pos + 8)
        pos += 8 + size + (size & 1)
    return found


WAV_FIELDS = {  # fmt chunk: (offset, struct code, values to try)
    "format_tag": (0, "<H", [0, 2, 6, 7, 0x11, 0xFFFE, 0x1234]),
    "channels": (2, "<H", [0, 3, 7, 255, 1024, 65535]),
    "sample_rate": (4, "<I", [0, 1, 7, 999, 44_101, 768_001, 2**31 - 1, 2**32 - 1]),
    "byte_rate": (8, "<I", [0, 1, 2**32 - 1]),
    "block_align": (12, "<H", [0, 1, 3, 65535]),
    "bits": (14, "<H", [0, 1, 7, 12, 33, 64, 65535]),
}


def wav_field(seed, rng, folder):
    if seed.fmt not in ("WAV", "WAVEX"):
        return flip_header(seed, rng, folder)
    data = bytearray(seed.path.read_bytes())
    fmt = _chunks(bytes(data)).get(b"fmt ")
    if fmt is None:
        return flip_header(seed, rng, folder)
    name = rng.choice(list(WAV_FIELDS))
    offset, code, values = WAV_FIELDS[name]
    value = rng.choice(values)
    struct.pack_into(code, data, fmt + offset, value)
    return _put(seed, bytes(data)), f"WAV {name} = {value}"


def huge_length(seed, rng, folder):
    data = bytearray(seed.path.read_bytes())
    value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, len(data) * 1000])
    if seed.fmt in ("WAV", "WAVEX") and b"data" in _chunks(bytes(data)):
        where = rng.choice(["riff", "data"])
        offset = 4 if where == "riff" else _chunks(bytes(data))[b"data"] - 4
        struct.pack_into("<I", data, offset, value & 0xFFFFFFFF)
        return _put(seed, bytes(data)), f"WAV {where} size = {value}"
    if seed.fmt == "FLAC" and data[:4] == b"fLaC":
        # STREAMINFO's 36-bit total-samples field sits in bytes 21..25 of the file.
        total = rng.choice([0, 2**36 - 1, 2**35, 10**9])
        packed = (data[21] & 0xF0) << 32 | total
        data[21:26] = packed.to_bytes(5, "big")
        return _put(seed, bytes(data)), f"FLAC total samples = {total}"
    if seed.fmt == "AIFF" and b"COMM" in data:
        comm = data.index(b"COMM") + 8
        struct.pack_into(">I", data, comm + 2, value & 0xFFFFFFFF)
        return _put(seed, bytes(data)), f"AIFF frames = {value}"
    return truncate(seed, rng, folder)


def wrong_ext(seed, rng, folder):
    ext = rng.choice(["wav", "flac", "mp3", "ogg", "aiff", "txt", "", "WAV", "m4a"])
    return _put(seed, seed.path.read_bytes(), ext), f"{seed.fmt} named .{ext}"


MAGIC = [b"", b"RIFF", b"RIFF\xff\xff\xff\xffWAVE", b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb"]


def random_bytes(seed, rng, folder):
    magic = rng.choice(MAGIC)
    size = rng.choice([0, 1, 4, 12, 44, 100, 1000, 5000])
    body = bytes(rng.randrange(256) for _ in range(size))
    ext = rng.choice(["wav", "flac", "ogg", "mp3", "aiff"])
    return _put(seed, magic + body, ext), f"{len(magic + body)} random bytes after {magic[:4]!r}"


def append_junk(seed, rng, folder):
    data = seed.path.read_bytes()
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 512, 4096])))
    if rng.random() < 0.5:
        return _put(seed, data + junk), f"{len(junk)} junk bytes appended"
    return _put(seed, junk + data), f"{len(junk)} junk bytes prepended"


def special_samples(seed, rng, folder):
    kind = rng.choice(list(SPECIAL_VALUES))
    subtype = rng.choice(["FLOAT", "DOUBLE"])
    data = music(rng, rng.uniform(0.2, 0.8), seed.sample_rate, seed.channels)
    if kind == "nan_one":
        data[rng.randrange(len(data)), rng.randrange(data.shape[1])] = np.nan
    elif rng.random() < 0.5:  # everywhere
        data[:] = SPECIAL_VALUES[kind]
    else:  # a run of samples somewhere in the music
        start = rng.randrange(len(data))
        data[start : start + rng.randint(1, 2000)] = SPECIAL_VALUES[kind]
    path = folder / "in.wav"
    sf.write(path, data, seed.sample_rate, subtype=subtype, format="WAV")
    seed.path.unlink(missing_ok=True)
    return path, f"{kind} samples ({subtype})"


def short(seed, rng, folder):
    frames = rng.choice(SHORT_FRAMES)
    path = folder / f"in.{seed.ext}"
    data = music(rng, 1.0, seed.sample_rate, seed.channels)[:frames]
    try:
        sf.write(path, data, seed.sample_rate, subtype=seed.subtype, format=seed.fmt)
    except (RuntimeError, ValueError, TypeError):
        path = folder / "in.wav"
        sf.write(path, data, seed.sample_rate, subtype="FLOAT", format="WAV")
    seed.path.unlink(missing_ok=True)
    return path, f"{frames} frames"


def odd_rate(seed, rng, folder):
    rate = rng.choice(ODD_RATES)
    frames = max(1, min(round(rate * rng.uniform(0.2, 1.0)), 40_000))
    path = folder / "in.wav"
    sf.write(path, music(rng, frames / rate, rate, 2)[:frames], rate, subtype="FLOAT")
    seed.path.unlink(missing_ok=True)
    return path, f"{rate} Hz, {frames} frames"


def many_channels(seed, rng, folder):
    channels = rng.choice(ODD_CHANNELS)
    frames = rng.choice([1, 100, 4800, 24_000]) if channels <= 64 else rng.choice([1, 480])
    path = folder / "in.wav"
    data = music(rng, frames / seed.sample_rate, seed.sample_rate, channels)[:frames]
    sf.write(path, data, seed.sample_rate, subtype="PCM_16")
    seed.path.unlink(missing_ok=True)
    return path, f"{channels} channels, {frames} frames"


def special_file(seed, rng, folder):
    kind = rng.choice(["fifo", "dev_null", "folder", "dangling", "empty", "odd_name", "dash_name"])
    seed_bytes = seed.path.read_bytes()
    seed.path.unlink()
    path = folder / "in.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_null":
        path.symlink_to("/dev/null")
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere.wav")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "odd_name":
        path = folder / "a song — ünïcode 'quoted' $x.wav"
        path.write_bytes(seed_bytes)
    else:
        path = folder / "-x.wav"
        path.write_bytes(seed_bytes)
    return path, kind


MUTATIONS: dict[str, tuple[Mutation, int]] = {  # name -> (function, weight)
    "intact": (intact, 3),
    "truncate": (truncate, 4),
    "flip_header": (flip_header, 4),
    "flip_any": (flip_any, 3),
    "wav_field": (wav_field, 4),
    "huge_length": (huge_length, 3),
    "wrong_ext": (wrong_ext, 2),
    "random_bytes": (random_bytes, 2),
    "append_junk": (append_junk, 1),
    "special_samples": (special_samples, 4),
    "short": (short, 3),
    "odd_rate": (odd_rate, 3),
    "many_channels": (many_channels, 2),
    "special_file": (special_file, 1),
}


def mutated_audio(
    folder: Path, rng: random.Random, real: list[Path]
) -> tuple[Path, str, AudioSeed]:
    """Write a seed into ``folder`` and mutate it; returns (input path, description, seed)."""
    seed = write_seed(folder, rng, real)
    names = list(MUTATIONS)
    name = rng.choices(names, weights=[MUTATIONS[n][1] for n in names])[0]
    path, what = MUTATIONS[name][0](seed, rng, folder)
    return path, f"{name}: {what} (seed {seed.fmt}/{seed.subtype} {seed.sample_rate} Hz)", seed
