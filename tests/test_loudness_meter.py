"""The BS.1770-4 meter: pyloudnorm's readings (the reference it replaced) and EBU test signals."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import torch

from jen1cli.loudness_meter import integrated_loudness, k_weighting_filters


def _tone(freqs, seconds: float, sr: int, amp: float) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return amp * sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs)) / len(freqs)


def _music_like(channels: int, seconds: float, sr: int, seed: int) -> np.ndarray:
    """[C, N]: decaying chord notes, a bass line and noise hits every half second, per channel."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    beat = (t % 0.5) / 0.5
    out = []
    for c in range(channels):
        notes = _tone(rng.uniform(200, 2000, 4), seconds, sr, 0.3) * np.exp(-3 * beat)
        bass = 0.4 * np.sin(2 * np.pi * 55 * (1 + (t // 2) % 3) * t)
        hits = 0.5 * rng.standard_normal(n) * np.exp(-40 * beat)
        out.append((notes + bass + hits) * (0.6 + 0.4 * c / max(channels, 1)))
    return np.stack(out)


def _bursts(channels: int, sr: int, seed: int) -> np.ndarray:
    """[C, N]: loud bursts between digital silence and a stretch far below the relative gate."""
    rng = np.random.default_rng(seed)
    parts = [
        np.zeros((channels, sr)),
        0.3 * rng.standard_normal((channels, sr // 2)),
        np.zeros((channels, 2 * sr)),
        0.002 * rng.standard_normal((channels, 2 * sr)),  # ~ -55 LUFS: absolute gate passes it
        0.5 * rng.standard_normal((channels, sr)),
        np.zeros((channels, 3 * sr // 2)),
    ]
    return np.concatenate(parts, axis=1)


def _noise(channels: int, seconds: float, sr: int, seed: int) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal((channels, round(seconds * sr)))


def _reference(x: np.ndarray, sr: int) -> float:
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sr).integrated_loudness(x.T.copy()))


def _ours(x: np.ndarray, sr: int) -> float:
    return integrated_loudness(torch.from_numpy(x), sr)


SIGNALS = {
    "noise": lambda c, sr: _noise(c, 3.0, sr, 1),
    "sine-100": lambda c, sr: np.tile(_tone([100.0], 2.0, sr, 0.5), (c, 1)),
    "sine-1k": lambda c, sr: np.tile(_tone([1000.0], 2.0, sr, 0.25), (c, 1)),
    "sine-9k": lambda c, sr: np.tile(_tone([9000.0], 2.0, sr, 0.25), (c, 1)),
    "music": lambda c, sr: _music_like(c, 4.0, sr, 2),
    "bursts": lambda c, sr: _bursts(c, sr, 3),
}


@pytest.mark.parametrize("sr", [22_050, 44_100, 48_000, 96_000])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_equals_pyloudnorm_on_stereo_signals(name, sr):
    x = SIGNALS[name](2, sr)
    assert _ours(x, sr) == pytest.approx(_reference(x, sr), abs=0.01)


@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("name", ["noise", "music", "bursts"])
def test_equals_pyloudnorm_on_mono_and_surround(name, channels):
    sr = 48_000
    x = SIGNALS[name](channels, sr)
    x = x * np.linspace(0.5, 1.5, channels)[:, None]  # unequal channels test the 1.41 weights
    assert _ours(x, sr) == pytest.approx(_reference(x, sr), abs=0.01)


def test_surround_channels_weigh_1_41():
    s = _noise(1, 2.0, 48_000, 4)
    silent = np.zeros((3, s.shape[1]))
    in_left_surround = np.concatenate([silent, s])  # channel 3 of L, R, C, Ls
    expected = _ours(s, 48_000) + 10 * math.log10(1.41)
    assert _ours(in_left_surround, 48_000) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("sr", [44_100, 48_000])
def test_equals_pyloudnorm_on_a_length_that_is_no_whole_number_of_hops(sr):
    # pyloudnorm also counts a last, partly filled block; one in ~100 blocks moves it < 0.01 LU.
    x = _music_like(2, 10.37, sr, 5)
    assert _ours(x, sr) == pytest.approx(_reference(x, sr), abs=0.01)


def test_filters_match_pyloudnorms_k_weighting_coefficients():
    for sr in (8_000, 11_025, 44_100, 48_000, 192_000):
        stages = pyloudnorm.Meter(sr)._filters.values()
        for (b, a), stage in zip(k_weighting_filters(sr), stages, strict=True):
            np.testing.assert_allclose(b, stage.b, rtol=0, atol=1e-12)
            np.testing.assert_allclose(a, stage.a, rtol=0, atol=1e-12)


def test_filters_at_48k_are_bs1770s_published_coefficients():
    (b1, a1), (b2, a2) = k_weighting_filters(48_000)
    # BS.1770-4 Tables 1 and 2 (the RBJ shapes reproduce them to ~1e-4).
    np.testing.assert_allclose(
        b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=2e-4
    )
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=2e-4)
    # Its high-pass numerator is BS.1770's scaled to unity pass-band gain (0.995 [1, -2, 1]).
    np.testing.assert_allclose(np.array(b2) / b2[0], [1.0, -2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=2e-4)


def test_a_full_scale_997_hz_sine_in_one_channel_reads_about_minus_3_01():
    # BS.1770's calibration point; the RBJ shelf (pyloudnorm's default too) reads 0.04 dB low.
    x = _tone([997.0], 2.0, 48_000, 1.0)[None]
    assert _ours(x, 48_000) == pytest.approx(-3.05, abs=0.005)


def test_ebu_tech_3341_cases_1_3_4_read_minus_23():
    """Tech 3341's -23 LUFS cases (3 and 4 at half length): the gates leave the -23 dBFS part."""
    sr = 48_000

    def level(db: float, seconds: float) -> np.ndarray:  # a stereo 1 kHz sine, peak at `db` dBFS
        return np.tile(_tone([1000.0], seconds, sr, 10 ** (db / 20)), (2, 1))

    case3 = np.concatenate([level(-36, 5), level(-23, 30), level(-36, 5)], axis=1)
    case4 = np.concatenate(
        [level(-72, 5), level(-36, 5), level(-23, 30), level(-36, 5), level(-72, 5)], axis=1
    )
    assert _ours(level(-23, 2), sr) == pytest.approx(-23.0, abs=0.1)
    assert _ours(case3, sr) == pytest.approx(-23.0, abs=0.1)
    assert _ours(case4, sr) == pytest.approx(-23.0, abs=0.1)


def test_silence_and_clips_shorter_than_a_block_read_minus_infinity():
    assert _ours(np.zeros((2, 48_000)), 48_000) == -math.inf
    assert _ours(1e-6 * _noise(2, 1.0, 48_000, 6), 48_000) == -math.inf  # below the -70 gate
    assert _ours(_noise(2, 0.399, 48_000, 7), 48_000) == -math.inf
    assert math.isfinite(_ours(_noise(2, 0.4, 48_000, 7), 48_000))


def test_refuses_more_than_five_channels_and_other_shapes():
    with pytest.raises(ValueError, match="1 to 5 channels"):
        integrated_loudness(torch.zeros(6, 48_000), 48_000)
    with pytest.raises(ValueError, match=r"\[C, N\]"):
        integrated_loudness(torch.zeros(48_000), 48_000)


def test_float32_input_measures_like_float64():
    x = _music_like(2, 2.0, 48_000, 8)
    as32 = torch.from_numpy(x).float()
    assert integrated_loudness(as32, 48_000) == pytest.approx(_ours(x, 48_000), abs=1e-4)


@pytest.mark.parametrize("sr", [11_025, 48_000, 192_000])
def test_filtering_in_chunks_equals_one_pass(sr):
    from jen1cli.loudness_meter import HOPS_PER_S, hop_energies, k_weight

    x = torch.from_numpy(_music_like(2, 9.05, sr, 9))
    squares = k_weight(x, sr).square()
    hops = hop_energies(x, sr)  # [C, 90]
    edges = [h * sr // HOPS_PER_S for h in range(hops.shape[-1] + 1)]
    spans = zip(edges[:-1], edges[1:], strict=True)
    one_pass = torch.stack([squares[:, a:b].sum(-1) for a, b in spans], -1)
    torch.testing.assert_close(hops, one_pass, rtol=1e-10, atol=0)  # without warm-up: 2e-2
