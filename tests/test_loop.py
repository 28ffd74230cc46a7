"""`jen1 generate --loop`: the file plays end-to-start with no seam.

The seam measures: the sample jump across the wrap, and the spectral flux between STFT frames
that straddle it, each no larger than anywhere inside the clip; and no fade to silence there.
"""

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from jen1cli.audio import integrated_loudness, master
from jen1cli.cli import app
from jen1cli.loop import close_loop, master_loop, steadiest_start, stretch_loop
from jen1cli.modules.circular_denoiser import CircularDenoiser
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions
from tests.tiny_fourier import tiny_fourier_model

SR = 48_000
N_FFT, HOP = 1024, 256
runner = CliRunner()


def seam(x: torch.Tensor) -> dict[str, float]:
    """Seam measures of a clip [C, N] played on repeat: at the wrap, and the largest inside."""
    n = x.shape[-1]
    twice = torch.cat([x, x], dim=-1)
    jumps = (twice[:, 1:] - twice[:, :-1]).abs().amax(dim=0)  # jumps[i]: sample i -> i + 1
    spec = torch.stft(
        twice.mean(0), N_FFT, HOP, window=torch.hann_window(N_FFT), center=False,
        return_complex=True,
    ).abs()  # fmt: skip
    flux = (spec[:, 1:] - spec[:, :-1]).clamp(min=0).sum(0)  # flux[j]: frame j -> j + 1
    starts = torch.arange(spec.shape[1]) * HOP
    straddles = (starts < n) & (starts + N_FFT > n)
    at_wrap = straddles[1:] | straddles[:-1]
    inside = starts[1:] + N_FFT <= n
    edge = round(0.1 * SR)
    wrap_level = torch.cat([x[:, -edge:], x[:, :edge]], dim=-1).square().mean()
    return {
        "jump_wrap": float(jumps[n - 1]),
        "jump_inside": float(jumps[: n - 1].max()),
        "flux_wrap": float(flux[at_wrap].max()),
        "flux_inside": float(flux[inside].max()),
        "level_db": float(10 * torch.log10(wrap_level / x.square().mean())),
    }


def assert_seamless(x: torch.Tensor) -> None:
    m = seam(x)
    assert m["jump_wrap"] <= m["jump_inside"], m
    assert m["flux_wrap"] <= m["flux_inside"], m
    assert abs(m["level_db"]) < 6.0, m  # no fade to silence (or swell) at the wrap


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Jen1Pipeline.from_pretrained(str(tiny_model_dir))


def test_loop_has_no_seam_and_plain_generation_has_one(pipe):
    options = SamplingOptions(steps=3, seed=0)
    loop = pipe.generate(["pad"], 2.0, options, loop=True)[0]
    assert loop.shape == (2, 2 * SR)
    assert_seamless(loop)
    assert_seamless(master_loop(loop, SR, -14.0))
    # the measure sees a seam where there is one: a plain clip's end does not lead to its start
    plain = master(pipe.generate(["pad"], 2.0, options)[0], SR, -14.0)
    assert seam(plain)["flux_wrap"] > seam(plain)["flux_inside"]


def test_loop_without_seam_for_a_non_local_decoder_and_any_length():
    """Griffin-Lim decodes each piece with its own phases, and 1.55 s is 232.5 latent frames:
    the wrap is closed by the overhang folded into the start, the 232 frames' loop stretched to
    the length, not by luck."""
    fourier = Jen1Pipeline(tiny_fourier_model())
    loop = fourier.generate(["pad"], 1.55, SamplingOptions(steps=2, seed=0), loop=True)[0]
    assert loop.shape == (2, round(1.55 * SR))
    assert_seamless(master_loop(loop, SR, -14.0))


def denoise_steps(pipe, seconds: float, steps: int) -> tuple[torch.Tensor, int]:
    """A loop of ``seconds`` and how many denoising steps it took."""
    calls = []

    def callback(stage, done, total):
        calls.append(stage)

    options = SamplingOptions(steps=steps, seed=2)
    loop = pipe.generate(["pad"], seconds, options, callback, loop=True)[0]
    return loop, calls.count("denoise")


def test_loop_past_the_window_is_sampled_by_overlapping_windows_at_once(pipe):
    loop, steps = denoise_steps(pipe, 2.6, 2)
    assert loop.shape == (2, round(2.6 * SR))
    assert_seamless(loop)
    assert steps == 2  # every window in each step: no rollout, no wrap to repair


@pytest.fixture(scope="module")
def wide_pipe(tmp_path_factory):
    """The tiny model with a 4 s window: a 2 s loop fits in it with context on both sides."""
    from jen1cli.testing import write_tiny_model

    path = write_tiny_model(tmp_path_factory.mktemp("wide") / "m", window_seconds=4.0)
    return Jen1Pipeline.from_pretrained(str(path))


def test_loop_inside_a_window_is_sampled_as_one_circle(wide_pipe):
    frames = wide_pipe.frames_for(2 * SR)
    assert wide_pipe._circular_context(frames) == frames // 2  # half a loop on each side
    loop, steps = denoise_steps(wide_pipe, 2.0, 3)
    assert steps == 3  # one circular window: no rollout and no wrap to repair
    assert loop.shape == (2, 2 * SR)
    assert_seamless(loop)
    assert_seamless(master_loop(loop, SR, -14.0))
    # never less than 5 % of the window on each side: a loop that leaves less room than that
    # is covered by a ring of windows instead, each speaking for all but 10 % at its edges
    window = wide_pipe.window_frames
    assert wide_pipe._circular_context(window - 60) == 30
    assert CircularDenoiser(None, window - 60, window, 30).windows == 1
    assert wide_pipe._circular_context(window - 10) == window // 10
    assert CircularDenoiser(None, window - 10, window, window // 10).windows == 2


def test_stretch_loop_keeps_a_loop_periodic_and_scales_its_tempo():
    t = torch.arange(48_000, dtype=torch.float64) / SR
    x = torch.stack([torch.sin(2 * torch.pi * 75 * t), torch.cos(2 * torch.pi * 440 * t)]).float()
    assert stretch_loop(x, 48_000) is x
    y = stretch_loop(x, 47_840)  # 160 samples short: the same 75 and 440 cycles in less time
    u = torch.arange(47_840, dtype=torch.float64) / 47_840
    expected = torch.stack([torch.sin(2 * torch.pi * 75 * u), torch.cos(2 * torch.pi * 440 * u)])
    torch.testing.assert_close(y.double(), expected, atol=1e-4, rtol=0)
    assert seam(y)["jump_wrap"] <= seam(y)["jump_inside"]
    # any signal, longer or shorter, even or odd: the periodic resampling, Nyquist bin included
    from scipy.signal import resample

    noise = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    for length in (1001, 1200, 999, 800):
        expected = resample(noise.double().numpy(), length, axis=-1)
        torch.testing.assert_close(
            stretch_loop(noise, length).double(), torch.from_numpy(expected), atol=1e-5, rtol=0
        )


def test_a_loop_between_two_frame_counts_is_stretched_not_crossfaded_with_itself(pipe, monkeypatch):
    """A decoder that plays 150 Hz in step with the circle's frames. 160 samples (half a frame)
    short, folding the overhang into the start (as before) mixed the tone with itself half a
    period late: it cancelled to 0.04 of its level there. Stretched, it keeps its level."""
    hop = pipe.hop_length
    length = SR - hop // 2
    frames = pipe.loop_frames(length)
    assert frames * hop == SR  # the nearest whole number of frames: 1 s, 150 whole cycles

    def decode_span(latents, start, stop, callback=None):
        position = latents[0, 0].long().repeat_interleave(hop) * hop + torch.arange(hop).repeat(
            latents.shape[-1]
        )  # the circle's sample behind each decoded sample
        tone = torch.sin(2 * torch.pi * 150 * position[start:stop].double() / SR).float()
        return tone.expand(1, 2, -1)

    monkeypatch.setattr(pipe, "_decode_span", decode_span)
    circle = torch.arange(frames, dtype=torch.float32).expand(1, 3, frames)
    loop = pipe._decode_loop(circle, length, lambda *a: None)[0]
    assert loop.shape == (2, length)
    start = loop[0, : round(0.25 * SR)]  # where the overhang would have been folded in
    peaks = start.unfold(0, 320, 320).abs().amax(dim=1)  # per period of the tone
    assert float(peaks.min()) > 0.98
    # all of it is the circle's 150 cycles, played in 160 samples less: periodic in the loop
    u = torch.arange(length, dtype=torch.float64) / length
    torch.testing.assert_close(
        loop[0].double(), torch.sin(2 * torch.pi * 150 * u), atol=1e-3, rtol=0
    )


def test_close_loop_makes_any_signal_wrap_continuously():
    t = torch.arange(12_000 + 2_000) / SR
    x = torch.sin(2 * torch.pi * 437.3 * t)[None]  # not periodic in 12 000 samples
    loop = close_loop(x, 12_000, 2_000)
    assert torch.equal(loop[:, 2_000:], x[:, 2_000:12_000])  # only the fade-in is touched
    assert seam(loop)["jump_wrap"] <= seam(loop)["jump_inside"]
    # 440 Hz repeats every 12 000 samples (110 periods): the overhang equals the start, no change
    periodic = torch.sin(2 * torch.pi * 440 * torch.arange(14_400, dtype=torch.float64) / SR)
    periodic = periodic.float()[None]
    assert torch.allclose(close_loop(periodic, 12_000, 2_400), periodic[:, :12_000], atol=1e-5)


def test_a_loop_file_begins_where_its_spectrum_is_steadiest():
    """Clicks every 20 ms with one pause, 1.0-1.3 s: the file starts in the pause, not on an
    attack (the clicks are closer than the analysis frames, so nowhere else is clear of them)."""
    torch.manual_seed(0)
    x = 0.01 * torch.randn(2, 2 * SR)
    for i in range(100):
        if not 1.0 <= i * 0.02 < 1.3:
            x[:, i * 960 : i * 960 + 100] += 1.0
    start = steadiest_start(x, SR)
    assert 0.98 * SR + 100 < start < 1.3 * SR - N_FFT  # inside the pause, clear of its ends
    # inside a steady passage, not at the edge of a short lull: a 60 ms silence loses to a
    # 300 ms stretch of soft noise, which a measure without the 0.1 s span would not see
    y = 0.01 * torch.randn(2, 2 * SR)
    for i in range(100):
        if not (0.5 <= i * 0.02 < 0.56 or 1.2 <= i * 0.02 < 1.5):
            y[:, i * 960 : i * 960 + 100] += 1.0
    y[:, round(0.5 * SR) : round(0.56 * SR)] *= 0.1
    assert 1.2 * SR < steadiest_start(y, SR) < 1.5 * SR
    # a loop has no start of its own: rolled, the same moment is found
    assert steadiest_start(x.roll(16_000, -1), SR) == start + 16_000
    # played on repeat it is the same loop, and its wrap now sits in the steadiest place
    assert seam(x.roll(-start, -1))["flux_wrap"] < 0.1 * seam(x)["flux_wrap"]


def test_master_loop_keeps_a_loop_seamless_and_sets_loudness():
    t = torch.arange(SR) / SR
    x = 0.05 * torch.stack([torch.sin(2 * torch.pi * 220 * t), torch.sin(2 * torch.pi * 330 * t)])
    x = x + 0.3  # a DC offset: the high-pass's start-up would make a seam
    mastered = master_loop(x, SR, -14.0)
    assert_seamless(mastered)
    assert abs(integrated_loudness(mastered, SR) + 14.0) <= 0.5
    assert seam(master(x, SR, -14.0))["jump_wrap"] > seam(mastered)["jump_wrap"]


# --- the command -------------------------------------------------------------------------------
@pytest.fixture()
def run(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--model", str(tiny_model_dir), "--device", "cpu", "-q"])

    return invoke


def test_generate_loop_writes_a_seamless_file_and_records_it(run, tiny_model_dir):
    # A fixed seed: the tiny model's output is noise-like, its flux even to ~1 % everywhere, so
    # wrap against inside is a near tie that a random seed would lose now and then (~3 %).
    result = run("generate", "drum loop", "--loop", "-d", "1.5", "--steps", "2", "-o", "l.wav",
                 "--seed", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    audio, sr = sf.read("l.wav", dtype="float32", always_2d=True)
    assert sr == SR and audio.shape == (round(1.5 * SR), 2)
    clip = torch.from_numpy(audio.T.copy())
    assert_seamless(clip)
    assert abs(integrated_loudness(clip, SR) + 14.0) <= 0.5
    meta = json.loads(Path("l.wav.json").read_text())
    assert meta["loop"] is True and meta["negative_prompt"] is None
    # the file is the pipeline's loop (as sampled) begun at its steadiest moment, as recorded
    sampled = Jen1Pipeline.from_pretrained(str(tiny_model_dir)).generate(
        ["drum loop"], 1.5, SamplingOptions(steps=2, seed=0), loop=True
    )[0]
    start = round(meta["loop_start_s"] * SR)
    assert start == steadiest_start(sampled, SR)
    expected = master_loop(sampled.roll(-start, -1), SR, -14.0)
    torch.testing.assert_close(clip, expected, atol=1e-5, rtol=0)


def test_generate_loop_refuses_a_too_short_loop(run):
    result = run("generate", "x", "--loop", "-d", "0.5", "-o", "l.wav")
    assert result.exit_code == 2 and "--loop needs a --duration of at least 1 s" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not Path("l.wav").exists()
