"""Regenerated spans at the loudness of their surroundings (jen1cli/span_loudness.py): inpaint,
remix --mask and continue, on a tiny random model whose raw output level has nothing to do with
the song's."""

import pytest
import torch

import jen1cli.pipeline.inpaint as inpaint_module
from jen1cli.audio import integrated_loudness, true_peak_db
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions
from jen1cli.span_loudness import (
    DYNAMICS_LU,
    FILE_TOLERANCE_LU,
    SPAN_CAP_LU,
    SURROUND_SECONDS,
    match_spans,
    match_to,
    original_shift,
    surroundings,
)
from jen1cli.testing import tiny_model

SR = 48_000
SPANS_S = [(2.0, 3.0), (5.0, 5.8)]
OPTIONS = SamplingOptions(steps=2, seed=3)


def _song(seconds: float = 8.0, level: float = 0.006) -> torch.Tensor:
    """A quiet piece (about -40 LUFS): a chord whose notes change each half second, and hiss."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(round(seconds * SR)) / SR
    root = 220 * 2 ** (torch.floor(t * 2) % 4 / 12)
    chord = sum(torch.sin(2 * torch.pi * root * r * t) for r in (1.0, 1.25, 1.5))
    mono = level * chord + 0.1 * level * torch.randn(t.numel(), generator=g)
    return torch.stack([mono, torch.roll(mono, 11)])


def _lufs(x: torch.Tensor) -> float:
    return integrated_loudness(x, SR)


def _samples(spans_s):
    return [(round(s * SR), round(e * SR)) for s, e in spans_s]


def _span_and_surroundings(out: torch.Tensor, spans: list[tuple[int, int]], i: int):
    fade = round(0.02 * SR)  # the splice's crossfade sits inside the span: measure inside it
    s, e = spans[i]
    return out[..., s + fade : e - fade], surroundings(out, spans, i, SR)


@pytest.fixture(scope="module")
def pipe():
    return Jen1Pipeline(tiny_model())


def test_surroundings_are_the_kept_seconds_on_each_side():
    audio = torch.arange(10 * SR, dtype=torch.float32).expand(2, -1)
    spans = [(3 * SR, 4 * SR), (5 * SR, 6 * SR)]
    around = surroundings(audio, spans, 0, SR)
    # 2 s before span 0, then the 1 s between the spans (span 1 is left out)
    expected = torch.cat([audio[..., 1 * SR : 3 * SR], audio[..., 4 * SR : 5 * SR]], dim=-1)
    assert SURROUND_SECONDS == 2.0 and torch.equal(around, expected)
    assert surroundings(audio, [(0, 10 * SR)], 0, SR).shape[-1] == 0


def test_match_to_reaches_the_reference_and_keeps_its_peak_ceiling():
    g = torch.Generator().manual_seed(1)
    loud = 0.9 * torch.randn(2, SR, generator=g).clamp(-1, 1)
    reference = _song(2.0)
    matched = match_to(loud, reference, SR)
    assert abs(_lufs(matched) - _lufs(reference)) < 0.5
    assert true_peak_db(matched, SR) <= max(-1.0, true_peak_db(reference, SR)) + 0.05
    assert torch.equal(match_to(loud, torch.zeros(2, SR), SR), loud)  # silent reference


def test_inpainted_spans_match_their_surroundings_and_the_file_keeps_its_loudness(pipe):
    song = _song()
    spans = _samples(SPANS_S)
    out = pipe.inpaint(song, SPANS_S, "piano", OPTIONS)
    assert abs(_lufs(out) - _lufs(song)) < 1.0
    for i in range(len(spans)):
        span, around = _span_and_surroundings(out, spans, i)
        assert abs(_lufs(span) - _lufs(around)) < 1.0, (i, _lufs(span), _lufs(around))
    keep = torch.ones(song.shape[-1], dtype=torch.bool)
    for s, e in spans:
        keep[s:e] = False
    assert torch.equal(out[..., keep], song[..., keep])  # the rest is still sample-exact


def test_without_the_match_the_tiny_models_spans_are_far_off(pipe, monkeypatch):
    """The check above is not vacuous: unmatched, the spans sit over 6 LU from the song."""
    monkeypatch.setattr(inpaint_module, "match_spans", lambda decoded, *args: decoded)
    song = _song()
    spans = _samples(SPANS_S)
    out = pipe.inpaint(song, SPANS_S, "piano", OPTIONS)
    gaps = [
        abs(_lufs(a) - _lufs(b)) for a, b in (_span_and_surroundings(out, spans, i) for i in (0, 1))
    ]
    assert min(gaps) > 6.0, gaps


def test_remixed_spans_match_their_surroundings(pipe):
    song = _song()
    spans = _samples(SPANS_S)
    out = pipe.remix(song, "jazz", 0.7, SPANS_S, SamplingOptions(steps=4, seed=2))
    for i in range(len(spans)):
        span, around = _span_and_surroundings(out, spans, i)
        assert abs(_lufs(span) - _lufs(around)) < 1.0, (i, _lufs(span), _lufs(around))


def test_a_continuation_matches_the_end_of_the_input(pipe):
    song = _song(4.0)
    out = pipe.continue_(song, 2.5, "piano", OPTIONS)
    n = song.shape[-1]
    new = out[..., n : n + round(2.5 * SR)]
    assert abs(_lufs(new) - _lufs(song[..., -round(SURROUND_SECONDS * SR) :])) < 1.0
    assert torch.equal(out[..., : n - round(0.02 * SR)], song[..., : n - round(0.02 * SR)])


def test_a_span_over_the_whole_file_keeps_the_files_own_loudness(pipe):
    song = _song(1.5)
    out = pipe.inpaint(song, [(0.0, 1.5)], "piano", OPTIONS)
    assert abs(_lufs(out[..., 1000:-1000]) - _lufs(song)) < 1.0


def test_a_span_follows_its_original_passage_by_at_most_the_dynamics_cap():
    around = _song(2.0)
    for gain_db, expected in ((-8.0, -DYNAMICS_LU), (0.6, 0.6), (8.0, DYNAMICS_LU)):
        original = around * 10 ** (gain_db / 20)
        shift = original_shift(_lufs(around), original, SR)
        assert abs(shift - expected) < 0.05, (gain_db, shift)
    assert original_shift(_lufs(around), torch.zeros(2, SR), SR) == 0.0  # a silent original


def _edit(song: torch.Tensor, spans: list[tuple[int, int]], seed: int = 4) -> torch.Tensor:
    """``song`` with its spans matched from a model output far louder than anything in it."""
    loud = 0.5 * torch.randn(2, song.shape[-1], generator=torch.Generator().manual_seed(seed))
    decoded = torch.zeros_like(song)
    for s, e in spans:
        decoded[..., s:e] = loud[..., s:e]
    out = song.clone()
    matched = match_spans(decoded, song, spans, SR)
    for s, e in spans:
        out[..., s:e] = matched[..., s:e]
    return out


def test_a_quiet_passage_stays_quieter_within_the_cap():
    """A song whose span was a quiet passage: a plain match to its surroundings would lift it to
    their level; the regenerated span stays at least DYNAMICS_LU below them, within the cap."""
    song = _song()
    spans = _samples([(2.0, 4.0)])
    s, e = spans[0]
    song[..., s:e] *= 10 ** (-10 / 20)
    out = _edit(song, spans)
    gap = _lufs(out[..., s:e]) - _lufs(surroundings(out, spans, 0, SR))
    assert -SPAN_CAP_LU - 0.1 < gap < -DYNAMICS_LU + 0.1, gap


def test_a_loud_event_inpainted_away_keeps_the_files_loudness_within_the_cap():
    """A burst 12 dB over the rest of the song, regenerated: matched to its quiet surroundings
    alone, the file would drop by several LU; the common offset brings it back as far as the
    cap allows, and no span leaves the cap."""
    song = _song()
    spans = _samples([(2.0, 3.5), (5.0, 5.8)])
    s, e = spans[0]
    song[..., s:e] *= 10 ** (12 / 20)
    out = _edit(song, spans)
    gaps = [
        _lufs(out[..., a:b]) - _lufs(surroundings(out, spans, i, SR))
        for i, (a, b) in enumerate(spans)
    ]
    assert all(abs(g) < SPAN_CAP_LU + 0.1 for g in gaps), gaps
    moved = _lufs(out) - _lufs(song)
    # Either the file is back within the tolerance, or the offset went as far as the cap allows.
    assert abs(moved) < FILE_TOLERANCE_LU + 0.05 or max(gaps) > SPAN_CAP_LU - 0.1, (moved, gaps)
    plain = song.clone()
    for i, (a, b) in enumerate(spans):
        plain[..., a:b] = match_to(out[..., a:b], surroundings(song, spans, i, SR), SR)
    assert abs(moved) < abs(_lufs(plain) - _lufs(song)) - 0.5


def test_a_small_move_of_the_files_loudness_is_left_to_the_spans_own_targets():
    song = _song()
    spans = _samples(SPANS_S)
    out = _edit(song, spans)
    assert abs(_lufs(out) - _lufs(song)) < FILE_TOLERANCE_LU
    for i, (a, b) in enumerate(spans):  # the song is even: each span at its surroundings'
        gap = _lufs(out[..., a:b]) - _lufs(surroundings(out, spans, i, SR))
        assert abs(gap) < 0.3, (i, gap)
