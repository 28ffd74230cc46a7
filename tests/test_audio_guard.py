"""Reading audio survives what the fuzzer found: pipes, absurd rates and headers, corrupt samples,
libmpg123's chatter, and rates whose exact resampling filter would not fit in memory."""

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from jen1cli import audio as A
from jen1cli.audio import AudioError
from jen1cli.audio_guard import MAX_RATE_SHIFT, resample_rate

SR = 48_000
WIDTH, ROLLOFF = A._RESAMPLE["lowpass_filter_width"], A._RESAMPLE["rolloff"]


def _tone(path: Path, rate: int, frames: int, channels: int = 2, subtype="FLOAT") -> Path:
    t = np.arange(frames) / rate
    data = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([data] * channels, axis=1).astype(np.float32), rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    "rate", [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 88_200, 96_000, 192_000, 768_000]
)
def test_usual_rates_are_resampled_exactly(rate):
    assert resample_rate(rate, SR, WIDTH, ROLLOFF) == rate


@pytest.mark.parametrize("rate", [11_111, 44_101, 47_999, 96_001, 767_999])
def test_a_rate_sharing_no_factor_with_48k_is_read_as_a_neighbour(tmp_path, rate):
    """torchaudio's filter table for 44 101 -> 48 000 Hz would hold 2 billion entries (8 GB)."""
    near = resample_rate(rate, SR, WIDTH, ROLLOFF)
    assert near != rate and abs(near - rate) <= MAX_RATE_SHIFT * rate
    path = _tone(tmp_path / "odd.wav", rate, rate // 4)
    start = time.monotonic()
    audio, info = A.load_audio(path)
    assert time.monotonic() - start < 10
    assert audio.shape == (2, -(-(rate // 4) * SR // near)) and f"read as {near} Hz" in info.note
    # a training crop of the same file agrees with the whole file's load
    crop = A.read_audio_segment(path, 0.05, 0.1)
    assert torch.allclose(crop, audio[:, round(0.05 * SR) : round(0.15 * SR)], atol=1e-5)


@pytest.mark.parametrize("rate", [1, 7, 999, 768_001, 2**31 - 1])
def test_a_sample_rate_no_audio_has_is_refused(tmp_path, rate):
    path = _tone(tmp_path / "x.wav", rate, 4)
    with pytest.raises(AudioError, match=f"sample rate is {rate} Hz"):
        A.load_audio(path)


@pytest.mark.parametrize("value", [1e30, np.inf, np.nan])
def test_corrupt_sample_values_are_refused(tmp_path, value):
    data = np.full((4800, 2), 0.1, np.float32)
    data[100] = value
    sf.write(tmp_path / "x.wav", data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="corrupt|NaN"):
        A.load_audio(tmp_path / "x.wav")


def test_samples_a_little_above_full_scale_are_kept(tmp_path):
    sf.write(tmp_path / "x.wav", np.full((4800, 2), 8.0, np.float32), SR, subtype="FLOAT")
    audio, info = A.load_audio(tmp_path / "x.wav")
    assert float(audio.max()) == 8.0 and "above full scale" in info.note


def test_a_pipe_is_refused_at_once_instead_of_blocking(tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)  # opening it would wait forever for a writer
    for read in (A.load_audio, A.audio_info):
        with pytest.raises(AudioError, match="not a regular file"):
            read(fifo)


def test_a_flac_header_promising_more_than_the_file_holds(tmp_path):
    """The length check reads the header (10 s here); decoding then fails cleanly, in one line,
    where the data ends (libsndfile cannot say how much it decoded before that)."""
    path = _tone(tmp_path / "x.flac", SR, 4800, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[21:26] = ((data[21] & 0xF0) << 32 | 10 * SR).to_bytes(5, "big")  # STREAMINFO: 10 s
    path.write_bytes(bytes(data))
    assert A.audio_info(path).frames == 10 * SR
    with pytest.raises(AudioError, match="cannot decode") as error:
        A.load_audio(path)
    assert len(str(error.value).splitlines()) == 1


def test_a_wav_data_size_beyond_the_file_is_read_as_what_is_there(tmp_path):
    path = _tone(tmp_path / "x.wav", SR, 4800)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    struct.pack_into("<I", data, at, 2**32 - 1)
    path.write_bytes(bytes(data))
    audio, _ = A.load_audio(path)
    assert audio.shape == (2, 4800)


def test_libmpg123_notes_on_a_damaged_mp3_do_not_reach_the_terminal(tmp_path, capfd):
    path = tmp_path / "x.mp3"
    sf.write(path, np.zeros((SR, 2), np.float32) + 0.1, SR, format="MP3")
    data = bytearray(path.read_bytes())
    for i in range(400, len(data), 97):  # break frame headers all through the file
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    try:
        A.load_audio(path)
    except AudioError:
        pass
    err = capfd.readouterr().err
    assert "Note:" not in err and "mpg123" not in err, err
