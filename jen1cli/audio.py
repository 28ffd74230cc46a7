"""Audio I/O for musicians: read any file as 48 kHz stereo, loudness-normalise, splice, save.

Everything works on float32 tensors shaped [C, N] (channels, samples). Files are read with soundfile
(libsndfile: WAV, FLAC, OGG, MP3, AIFF...), resampled with torchaudio's Kaiser-windowed sinc
("kaiser_best" quality) and written atomically, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor

from jen1cli import loudness_meter
from jen1cli.atomic_files import _refuse_folder, atomic_write
from jen1cli.audio_guard import AudioError, check_samples, quiet_c_stderr, resample_rate

# Opening a file and reading its header need no torch (audio_header.py); re-exported here.
from jen1cli.audio_header import READ_HINT as _READ_HINT
from jen1cli.audio_header import AudioInfo, audio_info  # noqa: F401 - public API
from jen1cli.audio_header import info_of as _info_of
from jen1cli.audio_header import one_line as _one_line
from jen1cli.audio_header import open_audio as _open

# "kaiser_best": a 64-zero-crossing Kaiser sinc, transparent for music (torchaudio's default is 6).
_RESAMPLE = dict(
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    resampling_method="sinc_interp_kaiser",
    beta=14.769656459379492,
)
_WRITE_FORMATS = {  # extension -> (libsndfile format, default subtype)
    # Float WAV stores every float32 sample exactly, so inpainting/continuation keep the given audio
    # bit-for-bit; 24-bit PCM would round arbitrary floats to 2^-23 steps.
    ".wav": ("WAV", "FLOAT"),
    ".flac": ("FLAC", "PCM_24"),  # FLAC has no float subtype; 24 bits is its best
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
_SILENCE_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence
_LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block; shorter clips are measured looped
_OVERSAMPLE = 4  # true peak = peak of the 4x oversampled signal (BS.1770 Annex 2)
_READ_BLOCK = 1 << 20  # frames per read: memory follows the data, not what a header claims


# ----------------------------------------------------------------------------------------- reading


def _read_frames(f: sf.SoundFile, lo: int, hi: int) -> np.ndarray:
    """Frames [lo, hi) of an open file as float32 [n, C]; n < hi - lo where the data ends early.

    Read in blocks, so memory follows the data rather than what a (corrupt) header claims.
    """
    pieces, have = [], 0
    if hi > lo:
        try:
            with quiet_c_stderr() if f.format == "MP3" else nullcontext():
                f.seek(lo)
                while have < hi - lo:
                    want = min(_READ_BLOCK, hi - lo - have)
                    pieces.append(f.read(want, dtype="float32", always_2d=True))  # [n, C]
                    have += len(pieces[-1])
                    if len(pieces[-1]) < want:  # the data ends before the header says
                        break
        except (RuntimeError, OSError, ValueError) as e:
            raise AudioError(f"cannot decode {f.name} ({_one_line(e)}) — {_READ_HINT}") from e
    data = np.concatenate(pieces) if pieces else np.zeros((0, f.channels), np.float32)
    check_samples(float(np.abs(data).max(initial=0.0)), f.name, AudioError)
    return data


def _read(f: sf.SoundFile, start: int, frames: int) -> Tensor:
    """Frames [start, start + frames) of an open file as float32 [C, frames], zeros outside it."""
    lo, hi = max(start, 0), min(start + frames, f.frames)
    data = _read_frames(f, lo, hi)
    out = torch.zeros(f.channels, frames)
    out[:, lo - start : lo - start + len(data)] = torch.from_numpy(data.T)
    return out


def _downmix_matrix(channels: int) -> Tensor:
    """[2, channels] weights folding a multichannel layout (WAV/FLAC channel order) into stereo."""
    h = math.sqrt(0.5)  # centre and surrounds at -3 dB, the usual ITU-style fold-down; LFE dropped
    layouts = {
        3: [(1, 0, h), (0, 1, h)],  # L R C
        4: [(1, 0, h, 0), (0, 1, 0, h)],  # L R Ls Rs
        5: [(1, 0, h, h, 0), (0, 1, h, 0, h)],  # L R C Ls Rs
        6: [(1, 0, h, 0, h, 0), (0, 1, h, 0, 0, h)],  # 5.1: L R C LFE Ls Rs
        8: [(1, 0, h, 0, h, 0, h, 0), (0, 1, h, 0, 0, h, 0, h)],  # 7.1: L R C LFE Lb Rb Ls Rs
    }
    if channels in layouts:
        m = torch.tensor(layouts[channels], dtype=torch.float32)
    else:  # unknown layout: alternate channels left/right
        m = torch.zeros(2, channels)
        m[0, 0::2], m[1, 1::2] = 1.0, 1.0
    # Rows sum to 1, so a mix of in-range channels can never clip; loudness is set later anyway.
    return m / m.sum(dim=1, keepdim=True)


def _convert(x: Tensor, sr: int, sample_rate: int, channels: int) -> tuple[Tensor, list[str]]:
    """Resample and match channels; mixing down happens before resampling, duplication after."""
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    notes = []
    c = x.shape[0]
    if c > 2 and channels == 2:
        x, notes = _downmix_matrix(c) @ x, [f"downmixed {c} channels to stereo"]
    elif c > 1 and channels == 1:
        x, notes = x.mean(dim=0, keepdim=True), [f"mixed {c} channels to mono"]
    if sr != sample_rate:
        rate = _source_rate(sr, sample_rate)
        x = AF.resample(x, rate, sample_rate, **_RESAMPLE)
        if rate != sr:
            cents = 1200 * math.log2(rate / sr)
            notes.append(
                f"read as {rate} Hz (exact resampling from {sr} Hz would need a huge filter; "
                f"pitch {cents:+.2f} cents)"
            )
        notes.append(f"resampled {rate} Hz to {sample_rate} Hz")
    if c == 1 and channels == 2:
        x = x.expand(2, -1).clone()
        notes.append("duplicated mono to stereo")
    return x, notes


def _source_rate(sr: int, sample_rate: int) -> int:
    """The rate a file at ``sr`` is resampled from (audio_guard.resample_rate)."""
    return resample_rate(sr, sample_rate, _RESAMPLE["lowpass_filter_width"], _RESAMPLE["rolloff"])


def load_audio(
    path: str | os.PathLike, sample_rate: int = 48_000, channels: int = 2
) -> tuple[Tensor, AudioInfo]:
    """Read a whole file as float32 [channels, N] at `sample_rate`; info describes the original."""
    with _open(path) as f:
        x = torch.from_numpy(_read_frames(f, 0, f.frames).T.copy())  # [C, N]
        if x.shape[-1] == 0:
            raise AudioError(f"{f.name} holds no audio (its data is missing) — {_READ_HINT}")
        held, peak = x.shape[-1], float(x.abs().max())
        x, notes = _convert(x, f.samplerate, sample_rate, channels)
        if held < f.frames:
            notes.insert(0, f"its header promises {f.frames} frames, it holds {held}")
        if peak > 1.0:  # only float files can do this; clipping would destroy what the user made
            notes.append(f"peaks reach {peak:.2f} (above full scale), kept unclipped")
        return x, _info_of(f, "; ".join(notes) or None)


def read_audio_segment(
    path: str | os.PathLike,
    start_s: float,
    duration_s: float,
    sample_rate: int = 48_000,
    channels: int = 2,
) -> Tensor:
    """Read `duration_s` seconds from `start_s` as [channels, round(duration_s*sample_rate)].

    Only the frames needed (plus the resampling filter's reach) are decoded, so a training loader
    can pick windows of hour-long files cheaply. The result equals the same slice of `load_audio`
    (exactly at the file's own rate, to float rounding otherwise); past the file's end it is zeros.
    """
    if start_s < 0 or duration_s <= 0:
        raise ValueError(f"need start_s >= 0 and duration_s > 0, got {start_s}, {duration_s}")
    first, n = round(start_s * sample_rate), round(duration_s * sample_rate)
    with _open(path) as f:
        sr = _source_rate(f.samplerate, sample_rate)  # what load_audio resamples from
        if sr == sample_rate:
            return _convert(_read(f, first, n), sr, sample_rate, channels)[0]
        # torchaudio resamples in blocks: every `src` input frames make `dst` output frames with the
        # same filters. Reading whole blocks plus the filter's reach on each side (zeros outside the
        # file, as the full resample pads) reproduces the full-file result on this slice.
        g = math.gcd(sr, sample_rate)
        src, dst = sr // g, sample_rate // g
        width = _RESAMPLE["lowpass_filter_width"] * src / (min(src, dst) * _RESAMPLE["rolloff"])
        reach = math.ceil(width) + src  # input frames one output block's filters touch
        pad_blocks = math.ceil(reach / src) + 1
        b0 = first // dst - pad_blocks
        b1 = -(-(first + n) // dst) + pad_blocks
        x = _read(f, b0 * src, (b1 - b0) * src)
        y, _ = _convert(x, sr, sample_rate, channels)  # [channels, (b1 - b0) * dst]
        out = y[:, first - b0 * dst : first - b0 * dst + n].clone()
        total = math.ceil(dst * f.frames / src)  # load_audio's length; beyond it: zeros
        out[:, max(total - first, 0) :] = 0.0
        return out


# --------------------------------------------------------------------------------------- loudness


def _to_2d(audio: Tensor) -> Tensor:
    if audio.dim() not in (1, 2):
        raise ValueError(f"audio must be [C, N] or [N], got shape {tuple(audio.shape)}")
    return audio if audio.dim() == 2 else audio[None]


def integrated_loudness(audio: Tensor, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS (loudness_meter.py); -inf for silence.

    Clips shorter than the 0.4 s gating block are measured looped to one block, which gives the
    loudness the clip has when played on repeat. At most 5 channels (L, R, C, Ls, Rs).
    """
    x = _to_2d(audio).detach().to("cpu", torch.float64)  # [C, N]
    if x.shape[-1] == 0:
        return -math.inf
    block = math.ceil(_LOUDNESS_BLOCK_S * sample_rate)
    if x.shape[-1] < block:
        x = x.repeat(1, -(-block // x.shape[-1]))
    return loudness_meter.integrated_loudness(x, sample_rate)


def _peak_envelope(audio: Tensor, chunk: int = 1 << 18) -> Tensor:
    """[N] true-peak envelope: max |x| over channels and the 4x-oversampled points in [n-1, n+1]."""
    x = _to_2d(audio).detach().float()
    n = x.shape[-1]
    per_step = torch.empty(n, device=x.device)  # peak over the interval [n, n+1)
    margin = 32  # > the oversampling filter's reach (17 samples)
    for s in range(0, n, chunk):
        e, lo = min(s + chunk, n), max(s - margin, 0)
        up = AF.resample(x[:, lo : min(e + margin, n)], 1, _OVERSAMPLE, lowpass_filter_width=16)
        up = up[:, (s - lo) * _OVERSAMPLE : (e - lo) * _OVERSAMPLE].abs().amax(dim=0)
        per_step[s:e] = up.view(-1, _OVERSAMPLE).amax(dim=1)
    per_step = torch.maximum(per_step, x.abs().amax(dim=0))  # a true peak is never below a sample
    return torch.maximum(per_step, F.pad(per_step, (1, 0))[:-1])


def true_peak_db(audio: Tensor, sample_rate: int) -> float:
    """True peak in dBFS: the peak of the 4x-oversampled signal; -inf for silence."""
    del sample_rate  # oversampling by 4 is rate-independent; kept for a uniform signature
    if audio.numel() == 0:
        return -math.inf
    peak = float(_peak_envelope(audio).max())
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _min_smooth(gain: Tensor, radius: int) -> Tensor:
    """Round a gain curve's corners while staying below it: min-filter, then two box passes."""
    g = -F.max_pool1d(-gain[None, None], 4 * radius + 1, stride=1, padding=2 * radius)
    for _ in range(2):  # each output averages values whose min-filter windows all include it
        g = F.avg_pool1d(g, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return g[0, 0]


def _limit(audio: Tensor, sample_rate: int, ceiling: float) -> Tensor:
    """Look-ahead true-peak limiter: exponential attack (1 ms) before a peak, release (50 ms) after.

    The gain reduction each peak needs, depth = 1 - gain, decays exponentially away from the peak
    on both sides; the curve keeps the deepest of them at every sample, so no peak gets less than it
    needs. That is a one-pole attack/release follower, computed with cumulative maxima in the log
    domain instead of a per-sample Python loop.
    """
    env = _peak_envelope(audio).double()
    need = (ceiling / env.clamp_min(1e-30)).clamp(max=1.0)  # [N] gain each sample may have
    if bool((need >= 1).all()):
        return audio
    log_depth = torch.log1p(-need)  # -inf where no reduction is needed
    k = torch.arange(need.numel(), dtype=torch.float64, device=need.device)
    release, attack = 0.050 * sample_rate, 0.001 * sample_rate  # time constants in samples
    # release: max_{j<=k} depth[j] e^{-(k-j)/release}; attack: max_{j>=k} depth[j] e^{-(j-k)/attack}
    rel = torch.cummax(log_depth + k / release, dim=0).values - k / release
    att = torch.flip(torch.cummax(torch.flip(log_depth - k / attack, [0]), dim=0).values, [0])
    gain = 1 - torch.exp(torch.maximum(rel, att + k / attack))
    gain = _min_smooth(gain, max(1, round(sample_rate * 2.5e-4)))  # round the corner at each peak
    return audio * gain.to(audio.dtype)


def _peak_control(audio: Tensor, sample_rate: int, ceiling: float) -> Tensor:
    """Bring the true peak to <= ceiling (linear), limiting with growing safety margins."""
    y = audio
    for margin_db in (0.05, 0.2, 0.5):
        peak = float(_peak_envelope(y).max())
        if peak <= ceiling:
            return y
        y = _limit(y, sample_rate, ceiling * 10 ** (-margin_db / 20))
    peak = float(_peak_envelope(y).max())
    # Last resort (never needed in tests): a plain gain, since the ceiling is a hard limit.
    return y if peak <= ceiling else y * (ceiling / peak * 0.9999)


_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command code (sndfile.h)
_SFE_SYSTEM = 2  # libsndfile's error code when a read or write of the file itself fails


def _drop_peak_chunk(f: sf.SoundFile) -> None:
    """Leave out libsndfile's PEAK chunk: it stamps the current time into float WAVs, so the same
    audio written twice would differ byte for byte (and `--seed` promises the same file)."""
    from soundfile import _ffi, _snd

    _snd.sf_command(f._file, _SFC_SET_ADD_PEAK_CHUNK, _ffi.NULL, 0)


def remove_dc(audio: Tensor, sample_rate: int, cutoff_hz: float = 10.0) -> Tensor:
    """High-pass below ``cutoff_hz``.

    A DC offset adds peak level but no loudness (K-weighting ignores it), so mastering removes it
    before the loudness and true-peak targets are set.
    """
    import torchaudio.functional as F

    centred = audio - audio.mean(dim=-1, keepdim=True)
    return F.highpass_biquad(centred, sample_rate, cutoff_hz, Q=0.5)


def master(audio: Tensor, sample_rate: int, target_lufs: float = -14.0) -> Tensor:
    """Generated audio as `jen1 generate` writes it: DC removed, then loudness and true peak set."""
    return loudness_normalize(remove_dc(audio, sample_rate), sample_rate, target_lufs)


def loudness_normalize(
    audio: Tensor, sample_rate: int, target_lufs: float = -14.0, true_peak_db: float = -1.0
) -> Tensor:
    """Set integrated loudness to target_lufs (±0.5 LU) with true peak <= true_peak_db dBFS.

    When the gain alone would push peaks over the ceiling, a look-ahead limiter tames them and the
    gain before it is searched (secant steps on the measured loudness) until both hold; each try
    limits the input once, never a limited copy again. Silence or near-silence (below -70 LUFS) is
    returned unchanged. If the target is out of reach (nearly all energy in peaks), the ceiling wins
    and a warning says so.
    """
    x = _to_2d(audio)
    if not bool(torch.isfinite(x).all()):
        raise AudioError("audio contains NaN or infinite samples — the generated audio is broken")
    measured = integrated_loudness(x, sample_rate)
    if measured < _SILENCE_LUFS:
        return audio.clone()
    ceiling = 10 ** (true_peak_db / 20)
    gain_db, prev = target_lufs - measured, None
    best: tuple[float, Tensor] = (math.inf, x)
    for _ in range(10):
        y = _peak_control(x * 10 ** (gain_db / 20), sample_rate, ceiling)
        measured = integrated_loudness(y, sample_rate)
        error = target_lufs - measured
        if abs(error) < best[0]:
            best = (abs(error), y)
        if abs(error) <= 0.1:
            break
        # Once the limiter works, loudness rises by less than the gain: follow the measured slope.
        slope = 1.0 if prev is None else (measured - prev[1]) / (gain_db - prev[0])
        if slope < 0.02:  # more gain no longer makes it louder: the target is out of reach
            break
        prev = (gain_db, measured)
        gain_db += max(-12.0, min(error / min(slope, 1.0), 12.0))
    if best[0] > 0.5:
        warnings.warn(
            f"loudness is {target_lufs - best[0]:.1f} LUFS, not {target_lufs:.1f}: the true-peak "
            f"ceiling of {true_peak_db:.1f} dBFS wins; lower the target loudness",
            stacklevel=2,
        )
    return best[1].reshape(audio.shape)


# ---------------------------------------------------------------------------------------- writing


def save_audio(
    path: str | os.PathLike,
    audio: Tensor,
    sample_rate: int,
    overwrite: bool = False,
    subtype: str | None = None,
) -> Path:
    """Save [C, N] (or [N]) audio atomically; the format comes from the extension.

    Default subtypes: .wav 32-bit float (keeps every sample exact, which inpainting and continuation
    rely on), .flac 24-bit, .ogg Vorbis, .mp3 MPEG layer III. Integer and lossy formats are clipped
    to [-1, 1] first; float WAV keeps values as they are.
    """
    p = Path(path).expanduser()
    _refuse_folder(p)
    if p.suffix.lower() not in _WRITE_FORMATS:
        raise AudioError(
            f"unknown audio format {p.suffix!r} of {p.name} — end it in .wav, .flac, .ogg or .mp3"
        )
    fmt, default_subtype = _WRITE_FORMATS[p.suffix.lower()]
    subtype = subtype or default_subtype
    x = _to_2d(audio).detach().to("cpu", torch.float32)
    if x.shape[-1] == 0:
        raise AudioError(f"nothing to save to {p}: the audio has 0 samples")
    if not bool(torch.isfinite(x).all()):
        raise AudioError(f"not saving {p}: the audio contains NaN or infinite samples")
    if subtype not in ("FLOAT", "DOUBLE"):
        x = x.clamp(-1.0, 1.0)
    data = x.T.contiguous().numpy()  # [N, C], soundfile's layout

    def write(tmp: Path) -> None:
        try:
            with sf.SoundFile(tmp, "w", sample_rate, data.shape[1], subtype, format=fmt) as f:
                _drop_peak_chunk(f)
                f.write(data)
        except sf.LibsndfileError as e:
            if e.code == _SFE_SYSTEM:  # the disk or the folder refused a write
                raise AudioError(
                    f"cannot write {p} (a system error: the disk may be full or read-only) — "
                    "check space and permissions"
                ) from e
            raise AudioError(
                f"cannot save {p.name} as {fmt}/{subtype} at {sample_rate} Hz ({_one_line(e)})"
                " — try .wav, which takes any rate"
            ) from e
        except (RuntimeError, ValueError, TypeError) as e:
            raise AudioError(
                f"cannot save {p.name} as {fmt}/{subtype} at {sample_rate} Hz ({_one_line(e)})"
                " — try .wav, which takes any rate"
            ) from e

    return atomic_write(p, write, overwrite=overwrite)


# ---------------------------------------------------------------------------------------- splicing


def _merge(spans: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in spans):
        if not 0 <= s <= e <= n:
            raise ValueError(f"span ({s}, {e}) is outside the audio's 0..{n} samples")
        if s == e:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def splice(
    original: Tensor,
    generated: Tensor,
    regenerate: Sequence[tuple[int, int]],
    fade: int,
    curve: Literal["equal_power", "linear", "residual"] = "equal_power",
) -> Tensor:
    """Take `generated` inside the sample spans [start, end) of `regenerate`, `original` elsewhere.

    Both are [..., N]. Outside the spans the result is `original` bit-for-bit; seams are smoothed by
    fades of up to `fade` samples (10-50 ms is typical) lying entirely inside the spans:
      - "equal_power" / "linear": crossfade from the original's own audio inside the span to the
        generated audio (inpainting, where the original continues under the new part);
      - "residual": keep `generated` and fade out the seam mismatch, the kept side's
        `original - generated` mirrored into the span; needs no original audio inside the span (use
        it for continuation) and assumes `generated` also covers the kept region (a full decode).
    """
    if original.shape != generated.shape:
        raise ValueError(f"shapes differ: {tuple(original.shape)} vs {tuple(generated.shape)}")
    if fade < 0 or curve not in ("equal_power", "linear", "residual"):
        raise ValueError(f"need fade >= 0 and a known curve, got {fade}, {curve!r}")
    n = original.shape[-1]
    spans = _merge(regenerate, n)
    out = original.clone()
    # Kept run i (possibly empty) lies between bounds[2i] and bounds[2i + 1].
    bounds = [0, *[x for span in spans for x in span], n]
    for i, (s, e) in enumerate(spans):
        out[..., s:e] = generated[..., s:e]
        kept_before, kept_after = s - bounds[2 * i], bounds[2 * i + 3] - e
        f = min(fade, (e - s) // ((kept_before > 0) + (kept_after > 0) or 1))  # fades never overlap
        for before, kept in ((True, kept_before), (False, kept_after)):
            k = min(f, kept) if curve == "residual" else f  # residual mirrors k kept samples
            if kept == 0 or k == 0:
                continue
            # d: distance from the seam of each faded sample (inner) and of its mirror (outer)
            d = torch.arange(k, device=out.device)
            inner = s + d if before else e - 1 - d
            outer = s - 1 - d if before else e + d
            t = ((d + 1) / (k + 1)).to(out.dtype)  # -> 0 at the seam, -> 1 deep inside the span
            if curve == "residual":
                w = 0.5 * (1 + torch.cos(math.pi * t))  # raised cosine, 1 at the seam -> 0
                resid = original[..., outer] - generated[..., outer]
                out[..., inner] = generated[..., inner] + w * resid
                continue
            if curve == "linear":
                w_old, w_new = 1 - t, t
            else:  # equal power: w_old^2 + w_new^2 = 1, no dip for unrelated signals
                w_old, w_new = torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)
            out[..., inner] = w_old * original[..., inner] + w_new * generated[..., inner]
    return out
