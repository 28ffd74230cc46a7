"""Audio I/O: loading and converting, segment reads, loudness, atomic saves, splicing."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from jen1cli import audio as A
from jen1cli.audio import AudioError

SR = 48_000


def sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5, phase: float = 0.0):
    """[N] float32 sine."""
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def noise(shape: tuple[int, ...], amp: float, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def write(path: Path, data: np.ndarray, sr: int = SR, subtype: str = "PCM_24") -> Path:
    sf.write(path, data, sr, subtype=subtype)  # data [N] or [N, C]
    return path


def assert_one_line_with_fix(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and " — " in message, message  # what is wrong — how to fix it
    for word in words:
        assert word in message, message


# ------------------------------------------------------------------------------------ loading


def test_load_48k_stereo_is_exact_and_unchanged(tmp_path):
    data = noise((SR // 2, 2), 0.3).clip(-1, 1)
    path = write(tmp_path / "a.wav", data)
    audio, info = A.load_audio(path)
    expected, _ = sf.read(path, dtype="float32")
    assert audio.dtype == torch.float32 and audio.shape == (2, SR // 2)
    assert torch.equal(audio, torch.from_numpy(expected.T))
    assert info == A.AudioInfo(SR, 2, SR // 2, 0.5, None)


def test_load_flac_matches_wav(tmp_path):
    data = noise((SR // 4, 2), 0.2)
    wav, _ = A.load_audio(write(tmp_path / "a.wav", data))
    flac, _ = A.load_audio(write(tmp_path / "a.flac", data))
    assert flac.shape == wav.shape and (wav - flac).abs().max() <= 2**-23  # both 24-bit


def test_resample_44k1_mono_to_48k_stereo_keeps_duration_pitch_and_level(tmp_path):
    path = write(tmp_path / "mono.wav", sine(1000.0, 3.3, sr=44_100, amp=0.5), sr=44_100)
    audio, info = A.load_audio(path)
    assert audio.shape[0] == 2 and abs(audio.shape[1] - 3.3 * SR) <= 1
    assert torch.equal(audio[0], audio[1])
    assert (info.sample_rate, info.channels, info.frames) == (44_100, 1, round(3.3 * 44_100))
    assert info.duration_s == pytest.approx(3.3, abs=1e-4)
    assert "44100 Hz to 48000 Hz" in info.note and "mono" in info.note
    middle = audio[0, SR : 2 * SR].numpy()  # one second, away from the edges
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins: the pitch is unchanged
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)


def test_six_channels_are_downmixed_with_a_note_and_no_clipping(tmp_path):
    n = SR // 10
    data = np.zeros((n, 6), dtype=np.float32)
    data[:, 2] = sine(440, 0.1, amp=0.5)  # centre only -> equal in both sides
    path = write(tmp_path / "surround.wav", data)
    audio, info = A.load_audio(path)
    assert info.channels == 6 and "downmixed 6 channels to stereo" in info.note
    assert audio.shape == (2, n) and torch.equal(audio[0], audio[1]) and audio.abs().max() > 0.1
    loud = write(tmp_path / "full.wav", np.full((n, 6), 0.99, dtype=np.float32))
    mixed, _ = A.load_audio(loud)
    assert mixed.abs().max() <= 0.99 + 1e-6  # weights sum to one per side: never clips


def test_channels_1_mixes_to_mono(tmp_path):
    data = np.stack([sine(440, 0.1, amp=0.4), np.zeros(SR // 10, np.float32)], axis=1)
    audio, info = A.load_audio(write(tmp_path / "st.wav", data), channels=1)
    assert audio.shape == (1, SR // 10) and "mixed 2 channels to mono" in info.note
    assert torch.allclose(audio[0], torch.from_numpy(data[:, 0] / 2), atol=1e-6)


def test_float_file_peaks_above_full_scale_are_kept_and_noted(tmp_path):
    data = np.stack([sine(440, 0.1, amp=1.5)] * 2, axis=1)
    audio, info = A.load_audio(write(tmp_path / "hot.wav", data, subtype="FLOAT"))
    assert audio.abs().max() == pytest.approx(1.5, abs=1e-3) and "above full scale" in info.note


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    text = tmp_path / "notes.wav"
    text.write_text("these are my lyrics, not audio\n")
    empty = write(tmp_path / "empty.wav", np.zeros((0, 2), dtype=np.float32))
    (tmp_path / "folder.wav").mkdir()
    return {
        "missing": tmp_path / "nope.wav",
        "directory": tmp_path / "folder.wav",
        "text": text,
        "empty": empty,
    }


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", ("not found", "nope.wav")),
        ("directory", ("is a folder",)),
        ("text", ("cannot read", "notes.wav", "WAV")),
        ("empty", ("no audio", "empty.wav")),
    ],
)
@pytest.mark.parametrize(
    "reader",
    [A.load_audio, A.audio_info, lambda p: A.read_audio_segment(p, 0.0, 0.1)],
    ids=["load_audio", "audio_info", "read_audio_segment"],
)
def test_bad_inputs_raise_one_line_audio_errors(bad_files, kind, words, reader):
    with pytest.raises(AudioError) as error:
        reader(bad_files[kind])
    assert isinstance(error.value, ValueError)
    assert_one_line_with_fix(error, *words)


def test_audio_info_reads_only_the_header(tmp_path, monkeypatch):
    path = write(tmp_path / "a.wav", sine(440, 0.5, sr=44_100), sr=44_100)

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio_info decoded samples")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    info = A.audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.note) == (44_100, 1, 22_050, None)
    assert info.duration_s == pytest.approx(0.5)


# ----------------------------------------------------------------------------- segment reads


@pytest.fixture
def frames_read(monkeypatch) -> list[int]:
    """Record how many frames each SoundFile.read call decodes."""
    calls: list[int] = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        calls.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    return calls


@pytest.mark.parametrize(
    ("start", "duration"), [(0.0, 0.25), (0.4321, 0.5), (1.8, 0.5), (2.5, 0.1)]
)
def test_segment_at_file_rate_is_the_exact_slice_and_reads_only_it(
    tmp_path, frames_read, start, duration
):
    path = write(tmp_path / "a.wav", noise((2 * SR, 2), 0.3))  # 2 s
    full, _ = A.load_audio(path)
    frames_read.clear()
    segment = A.read_audio_segment(path, start, duration)
    first, n = round(start * SR), round(duration * SR)
    expected = torch.zeros(2, n)
    piece = full[:, first : first + n]
    expected[:, : piece.shape[1]] = piece  # zeros past the end of the file
    assert segment.shape == (2, n) and torch.equal(segment, expected)
    assert sum(frames_read) <= n


def test_segment_of_resampled_mono_matches_full_load(tmp_path, frames_read):
    sr = 44_100
    path = write(tmp_path / "long.flac", noise((4 * sr,), 0.3).clip(-1, 1), sr=sr)
    full, _ = A.load_audio(path)
    for start, duration in [(0.0, 0.3), (1.23456, 0.5), (3.8, 0.5)]:
        frames_read.clear()
        segment = A.read_audio_segment(path, start, duration)
        first, n = round(start * SR), round(duration * SR)
        expected = torch.zeros(2, n)
        piece = full[:, first : first + n]
        expected[:, : piece.shape[1]] = piece
        assert segment.shape == (2, n)
        assert torch.allclose(segment, expected, atol=1e-6)  # bit-exact here; allow BLAS order
        assert sum(frames_read) < duration * sr + 2_000  # the slice plus the filter's reach


def test_segment_arguments_are_checked(tmp_path):
    path = write(tmp_path / "a.wav", noise((SR // 10, 2), 0.1))
    with pytest.raises(ValueError):
        A.read_audio_segment(path, -1.0, 0.1)
    with pytest.raises(ValueError):
        A.read_audio_segment(path, 0.0, 0.0)


# ---------------------------------------------------------------------------------- loudness


def reference_true_peak_db(audio: torch.Tensor) -> float:
    """An independent true-peak estimate: scipy polyphase 8x oversampling."""
    up = resample_poly(audio.double().numpy(), 8, 1, axis=-1)
    return 20 * math.log10(np.abs(up).max())


def test_integrated_loudness_of_a_stereo_1k_sine_is_its_level():
    # BS.1770: a 997 Hz full-scale sine in each of two channels reads 0 LUFS (+3 dB per channel).
    audio = torch.from_numpy(np.stack([sine(997, 2.0, amp=0.1)] * 2))
    assert A.integrated_loudness(audio, SR) == pytest.approx(-20.0, abs=0.05)
    assert A.integrated_loudness(torch.zeros(2, SR), SR) == -math.inf


def test_true_peak_finds_peaks_between_samples():
    # fs/4 with a 45 degree phase: every sample sits at 0.707 of the real peak (-3 dB).
    audio = torch.from_numpy(np.stack([sine(SR / 4, 0.5, amp=0.8, phase=np.pi / 4)] * 2))
    sample_peak = 20 * math.log10(float(audio.abs().max()))
    assert sample_peak == pytest.approx(20 * math.log10(0.8) - 3.01, abs=0.05)
    assert A.true_peak_db(audio, SR) == pytest.approx(20 * math.log10(0.8), abs=0.1)
    assert A.true_peak_db(torch.zeros(2, 100), SR) == -math.inf


def impulses() -> np.ndarray:
    x = noise((2, 2 * SR), 0.02, seed=1)
    x[:, ::4800] = 1.0  # a click every 100 ms, 34 dB above the bed
    return x


SIGNALS = {
    "loud": lambda: np.clip(noise((2, 2 * SR), 0.7, seed=2), -1, 1),
    "quiet": lambda: np.stack([sine(220, 2.0, amp=0.003), sine(330, 2.0, amp=0.003)]),
    "impulses": impulses,
    "short": lambda: np.stack([sine(440, 0.2, amp=0.3)] * 2) + noise((2, SR // 5), 0.01),
}


@pytest.mark.parametrize("name", SIGNALS)
def test_loudness_normalize_hits_target_under_the_true_peak_ceiling(name):
    x = torch.from_numpy(SIGNALS[name]())
    y = A.loudness_normalize(x, SR, target_lufs=-14.0, true_peak_db=-1.0)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert abs(A.integrated_loudness(y, SR) + 14.0) <= 0.5
    assert A.true_peak_db(y, SR) <= -1.0
    assert reference_true_peak_db(y) <= -1.0 + 0.1  # an independent 8x meter agrees
    looped = np.tile(y.double().numpy().T, (1 + (2 * SR) // y.shape[-1], 1))
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(looped) + 14.0) <= 0.5
    if name == "impulses":  # gain alone would have clipped: the limiter had to work
        gain = 10 ** ((-14.0 - A.integrated_loudness(x, SR)) / 20)
        assert A.true_peak_db(x * gain, SR) > 0.0


def test_loudness_normalize_leaves_silence_and_near_silence_alone():
    silence = torch.zeros(2, SR)
    out = A.loudness_normalize(silence, SR)
    assert torch.equal(out, silence) and not torch.isnan(out).any()
    hiss = torch.from_numpy(noise((2, SR), 1e-5))  # about -95 LUFS: below the -70 LUFS gate
    assert torch.equal(A.loudness_normalize(hiss, SR), hiss)
    assert torch.equal(A.loudness_normalize(torch.zeros(2, 1000), SR), torch.zeros(2, 1000))


def test_loudness_normalize_refuses_nan():
    x = torch.zeros(2, SR)
    x[0, 10] = float("nan")
    with pytest.raises(AudioError):
        A.loudness_normalize(x, SR)


def test_loudness_normalize_warns_when_only_peaks_carry_energy():
    clicks = torch.zeros(2, SR)
    clicks[:, ::4800] = 0.5  # nothing between clicks to raise: -14 LUFS is out of reach
    with pytest.warns(UserWarning, match="ceiling"):
        y = A.loudness_normalize(clicks, SR)
    assert A.true_peak_db(y, SR) <= -1.0


# ------------------------------------------------------------------------------------ saving


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_wav_is_float_and_sample_exact(tmp_path):
    audio = torch.rand(2, 5000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = A.save_audio(tmp_path / "out.wav", audio, SR)
    assert sf.info(path).subtype == "FLOAT" and listing(tmp_path) == ["out.wav"]
    loaded, _ = A.load_audio(path)
    assert torch.equal(loaded, audio)  # every float32 sample survives


def test_save_flac_and_ogg_choose_their_format_from_the_extension(tmp_path):
    audio = torch.from_numpy(np.stack([sine(440, 0.5, amp=0.5)] * 2))
    flac = A.save_audio(tmp_path / "out.flac", audio, SR)
    ogg = A.save_audio(tmp_path / "out.ogg", audio, SR)
    assert (sf.info(flac).format, sf.info(flac).subtype) == ("FLAC", "PCM_24")
    assert (sf.info(ogg).format, sf.info(ogg).subtype) == ("OGG", "VORBIS")
    flac_audio, _ = A.load_audio(flac)
    assert (flac_audio - audio).abs().max() <= 2**-23
    assert A.audio_info(ogg).frames == audio.shape[-1]


def test_save_pcm_clips_instead_of_wrapping(tmp_path):
    audio = torch.tensor([[1.5, -1.5, 0.25]]).repeat(2, 1)
    loaded, _ = A.load_audio(A.save_audio(tmp_path / "hot.flac", audio, SR))
    assert loaded[0, 0] > 0.99 and loaded[0, 1] < -0.99 and loaded[0, 2] == pytest.approx(0.25)


def test_save_refuses_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "take.wav"
    path.write_bytes(b"my precious take")
    audio = torch.zeros(2, 100)
    with pytest.raises(AudioError) as error:
        A.save_audio(path, audio, SR)
    assert_one_line_with_fix(error, "already exists", "--overwrite")
    assert path.read_bytes() == b"my precious take" and listing(tmp_path) == ["take.wav"]
    A.save_audio(path, audio + 0.5, SR, overwrite=True)
    assert torch.equal(A.load_audio(path)[0], audio + 0.5) and listing(tmp_path) == ["take.wav"]


def test_saved_file_gets_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = A.save_audio(tmp_path / "a.wav", torch.zeros(2, 10), SR)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("missing/out.wav", ("does not exist", "mkdir")),
        ("file.txt/out.wav", ("is not a folder",)),
        ("out.mp4", ("unknown audio format", ".wav")),
        ("sub", ("is a folder",)),
    ],
)
def test_save_refuses_bad_targets(tmp_path, target, words):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    before = listing(tmp_path)
    with pytest.raises(AudioError) as error:
        A.save_audio(tmp_path / target, torch.zeros(2, 10), SR)
    assert_one_line_with_fix(error, *words)
    assert listing(tmp_path) == before


def test_save_refuses_unwritable_folder(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: make the OS refuse anyway

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(AudioError) as error:
            A.save_audio(locked / "out.wav", torch.zeros(2, 10), SR)
    finally:
        locked.chmod(0o700)
    assert_one_line_with_fix(error, "cannot write to folder", "Permission denied")
    assert listing(locked) == []


def test_save_refuses_nan_and_empty_audio(tmp_path):
    bad = torch.zeros(2, 10)
    bad[1, 3] = float("inf")
    for audio in (bad, torch.zeros(2, 0)):
        with pytest.raises(AudioError):
            A.save_audio(tmp_path / "out.wav", audio, SR)
    assert listing(tmp_path) == []


def test_save_failure_in_the_encoder_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp3"
    path.write_bytes(b"old")
    with pytest.raises(AudioError) as error:  # MP3 has a fixed set of sample rates
        A.save_audio(path, torch.zeros(2, 10), 1234, overwrite=True)
    assert_one_line_with_fix(error, "cannot save", "MP3", "sample rate")
    assert listing(tmp_path) == ["out.mp3"] and path.read_bytes() == b"old"


# ---------------------------------------------------------------------------------- atomic_write


def test_atomic_write_writes_beside_the_target_with_its_extension(tmp_path):
    seen: list[Path] = []

    def write_json(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text(json.dumps({"seed": 7}))

    path = A.atomic_write(tmp_path / "meta.json", write_json)
    assert json.loads(path.read_text()) == {"seed": 7}
    assert seen[0].parent == tmp_path and seen[0].suffix == ".json" and seen[0] != path
    assert listing(tmp_path) == ["meta.json"]


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_write_failure_leaves_no_temp_and_no_output(tmp_path, existing):
    path = tmp_path / "latent.safetensors"
    if existing:
        path.write_bytes(b"old")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):  # write_fn's own error, unchanged
        A.atomic_write(path, half_then_crash, overwrite=True)
    assert listing(tmp_path) == (["latent.safetensors"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old"


def test_atomic_write_does_not_clobber_a_file_that_appears_meanwhile(tmp_path):
    path = tmp_path / "out.wav"

    def racing_writer(tmp: Path) -> None:
        path.write_bytes(b"someone else's")  # another process finished first
        tmp.write_bytes(b"mine")

    with pytest.raises(AudioError):
        A.atomic_write(path, racing_writer)
    assert path.read_bytes() == b"someone else's" and listing(tmp_path) == ["out.wav"]


# ---------------------------------------------------------------------------------- splicing


def two_signals(n: int = 4800, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, n, generator=g) * 2 - 1, torch.rand(2, n, generator=g) * 2 - 1


@pytest.mark.parametrize("curve", ["equal_power", "linear", "residual"])
def test_splice_keeps_original_exact_and_fades_inside_the_spans(curve):
    original, generated = two_signals()
    spans, fade = [(3000, 4800), (1000, 2000)], 100  # unsorted on purpose; the last touches the end
    out = A.splice(original, generated, spans, fade, curve=curve)
    keep = torch.ones(4800, dtype=torch.bool)
    keep[1000:2000] = keep[3000:4800] = False
    assert torch.equal(out[:, keep], original[:, keep])  # kept audio is sample-exact
    for s, e in [(1100, 1900), (3100, 4800)]:  # past the fades: the generated audio as is
        assert torch.equal(out[:, s:e], generated[:, s:e])
    for s, e in [(1000, 1100), (1900, 2000), (3000, 3100)]:  # the fades: inside the spans
        assert not torch.equal(out[:, s:e], generated[:, s:e])


def test_splice_crossfade_weights():
    original, generated = torch.ones(1, 1000), torch.zeros(1, 1000)
    power = A.splice(original, generated, [(100, 1000)], 9)[0]
    linear = A.splice(original, generated, [(100, 1000)], 9, curve="linear")[0]
    t = torch.arange(1, 10) / 10  # the fade runs from the seam into the span
    assert torch.allclose(power[100:109], torch.cos(t * math.pi / 2))
    assert torch.allclose(linear[100:109], 1 - t)
    assert power[99] == 1 and power[109] == 0  # nothing faded outside the span or after the fade
    power_sum = A.splice(original, torch.ones(1, 1000), [(100, 1000)], 9)[0, 100:109]
    assert torch.all(power_sum >= 1)  # equal power: cos + sin >= 1 (no dip)


def test_splice_residual_joins_a_continuation_without_a_click():
    # Continuation: the original has nothing after the prompt; the decoder's output is the prompt
    # (plus a small reconstruction error) and then new audio.
    t = torch.arange(4800) / SR
    prompt = 0.5 * torch.sin(2 * math.pi * 220 * t)[None].repeat(2, 1)
    original = prompt.clone()
    original[:, 2400:] = 0.0
    generated = prompt + 0.2  # a constant 0.2 mismatch: a plain cut would jump by 0.2
    cut = A.splice(original, generated, [(2400, 4800)], fade=0)
    smooth = A.splice(original, generated, [(2400, 4800)], fade=240, curve="residual")
    step = (prompt[:, 2400] - prompt[:, 2399]).abs().max()  # the sine's own step per sample
    assert (cut[:, 2400] - cut[:, 2399]).abs().max() > 0.19
    assert (smooth[:, 2400] - smooth[:, 2399]).abs().max() <= step + 0.01
    assert torch.equal(smooth[:, :2400], original[:, :2400])
    assert torch.equal(smooth[:, 2640:], generated[:, 2640:])


def test_splice_clamps_fades_to_short_spans_and_merges_overlaps():
    original, generated = two_signals(1000)
    out = A.splice(original, generated, [(500, 520), (510, 540)], 100)
    assert torch.equal(out[:, :500], original[:, :500]) and torch.equal(
        out[:, 540:], original[:, 540:]
    )
    assert torch.isfinite(out).all()
    batched = A.splice(original[None], generated[None], [(500, 540)], 100)
    assert torch.equal(batched[0], out)  # [B, C, N] works the same


def test_splice_checks_its_arguments():
    original, generated = two_signals(100)
    with pytest.raises(ValueError):
        A.splice(original, generated[:, :50], [(0, 10)], 5)
    with pytest.raises(ValueError):
        A.splice(original, generated, [(90, 120)], 5)
    with pytest.raises(ValueError):
        A.splice(original, generated, [(0, 10)], -1)


def test_saving_the_same_audio_twice_gives_identical_bytes(tmp_path):
    import time

    audio = torch.randn(2, 4800) * 0.1
    A.save_audio(tmp_path / "a.wav", audio, SR)
    time.sleep(1.1)  # libsndfile's PEAK chunk would stamp a different second into the second file
    A.save_audio(tmp_path / "b.wav", audio, SR)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
