"""`jen1 remix`: audio-to-audio at a strength, same length and loudness, reproducible, optional
spans kept sample-exact outside; bad values refused."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from typer.testing import CliRunner

from jen1cli.audio import integrated_loudness
from jen1cli.cli import app
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions
from tests.tiny_fourier import tiny_fourier_model

SR = 48_000
runner = CliRunner()


def _song(seconds: float = 1.6) -> torch.Tensor:
    """Two tones taking turns four times a second: a form for the remix to keep or lose."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(round(seconds * SR)) / SR
    turn = (torch.sin(2 * torch.pi * 2 * t) > 0).float()
    left = 0.3 * torch.sin(2 * torch.pi * 220 * t) * turn
    right = 0.25 * torch.sin(2 * torch.pi * 330 * t) * (1 - turn)
    return torch.stack([left, right]) + 0.01 * torch.randn(2, t.numel(), generator=g)


_MEL = torchaudio.transforms.MelSpectrogram(SR, n_fft=2048, hop_length=512, n_mels=64)


def log_mel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((torch.log(_MEL(a) + 1e-5) - torch.log(_MEL(b) + 1e-5)).abs().mean())


@pytest.fixture(scope="module")
def pipe():
    """The Fourier codec: its decoder follows the latent (the tiny SEANet's ignores it)."""
    return Jen1Pipeline(tiny_fourier_model())


def test_strength_orders_the_distance_to_the_input(pipe):
    """Lower strength -> closer to the input. Measured against the input as the codec renders it
    (an untrained codec is the floor of any distance), and against the input itself."""
    from jen1cli.pipeline import match_loudness

    song = _song()
    rendered = match_loudness(pipe.decode(pipe.encode(song[None]), song.shape[-1])[0], song, SR)
    options = SamplingOptions(steps=8, seed=1)
    outs = [pipe.remix(song, "piano", s, options=options) for s in (0.25, 0.5, 0.75, 1.0)]
    to_rendered = [log_mel_distance(out, rendered) for out in outs]
    to_input = [log_mel_distance(out, song) for out in outs]
    assert to_rendered == sorted(to_rendered) and to_rendered[0] < 0.5 * to_rendered[-1]
    assert to_input == sorted(to_input)
    assert all(out.shape == song.shape for out in outs)


def test_strength_zero_returns_the_input_and_remix_is_seed_reproducible(pipe):
    song = _song(1.2)
    assert torch.equal(pipe.remix(song, "piano", 0.0), song)
    a = pipe.remix(song, "piano", 0.6, options=SamplingOptions(steps=4, seed=3))
    assert torch.equal(a, pipe.remix(song, "piano", 0.6, options=SamplingOptions(steps=4, seed=3)))
    assert not torch.equal(
        a, pipe.remix(song, "piano", 0.6, options=SamplingOptions(steps=4, seed=4))
    )


def test_remix_keeps_the_loudness_and_remixes_past_the_window(pipe):
    song = 0.3 * _song(2.3)  # quiet, and longer than the 1 s window
    out = pipe.remix(song, "drums", 0.8, options=SamplingOptions(steps=3, seed=0))
    assert out.shape == song.shape
    assert abs(integrated_loudness(out, SR) - integrated_loudness(song, SR)) < 0.5


def test_remix_with_spans_keeps_the_rest_sample_exact(pipe):
    song = _song(1.8)
    spans = [(0.3, 0.7), (1.2, 1.5)]
    out = pipe.remix(song, "piano", 0.7, spans, SamplingOptions(steps=3, seed=0))
    keep = torch.ones(song.shape[-1], dtype=torch.bool)
    for s, e in spans:
        keep[round(s * SR) : round(e * SR)] = False
    assert torch.equal(out[:, keep], song[:, keep])
    assert not torch.equal(out[:, ~keep], song[:, ~keep])


class _Calls(list):
    """A progress callback that keeps its calls."""

    def __call__(self, *args) -> None:
        self.append(args)


@pytest.mark.parametrize("name", ["dpmsolver++", "ddim", "euler"])
def test_partial_denoise_runs_the_last_steps_from_the_noised_start(name):
    """sample() from init_latents: int(strength * steps) steps, landing where an exact denoiser
    says; strength 0 returns the start untouched."""
    from jen1cli.diffusion.sampling import sample
    from tests.diffusion.test_sampling import Oracle

    g = torch.Generator().manual_seed(0)
    target, start = torch.randn(1, 4, 16, generator=g), torch.randn(1, 4, 16, generator=g)
    for strength, steps_run in ((0.6, 3), (0.0, 0)):
        calls = _Calls()
        out = sample(
            Oracle(target), shape=(1, 4, 16), scheduler=name, num_inference_steps=5,
            init_latents=start, strength=strength, callback=calls,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        assert len(calls) == steps_run
        assert torch.allclose(out, target if steps_run else start, atol=1e-4)


@pytest.mark.parametrize("strength", [float("nan"), -0.5, 1.01])
def test_bad_strength_in_the_pipeline(pipe, strength):
    with pytest.raises(ValueError, match="strength"):
        pipe.remix(torch.zeros(2, 1000), "", strength)


# --- the command -------------------------------------------------------------------------------
@pytest.fixture()
def run(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--model", str(tiny_model_dir), "--device", "cpu", "-q"])

    return invoke


def _wav(path: str, seconds: float = 1.2) -> torch.Tensor:
    song = _song(seconds)
    sf.write(path, song.T.numpy(), SR, subtype="FLOAT")
    return song


def test_remix_command_writes_same_length_reproducible_file_with_sidecar(run):
    song = _wav("song.wav")
    for name in ("a.wav", "b.wav"):
        result = run(
            "remix", "song.wav", "-p", "jazz trio", "--strength", "0.4", "--seed", "7",
            "--steps", "3", "-o", name,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == name
    assert Path("a.wav").read_bytes() == Path("b.wav").read_bytes()
    out, sr = sf.read("a.wav", dtype="float32", always_2d=True)
    assert sr == SR and out.shape == (song.shape[-1], 2)
    meta = json.loads(Path("a.wav.json").read_text())
    assert meta["task"] == "remix" and meta["strength"] == 0.4 and meta["prompt"] == "jazz trio"
    assert meta["seed"] == 7 and meta["steps"] == 3 and meta["spans"] is None
    assert meta["negative_prompt"] is None and {"model", "jen1_version", "input"} <= set(meta)


def test_remix_command_with_mask_keeps_the_rest(run):
    song = _wav("song.wav")
    result = run("remix", "song.wav", "--mask", "0.2-0.5", "--strength", "1", "--steps", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "song.remixed.wav"
    out, _ = sf.read("song.remixed.wav", dtype="float32", always_2d=True)
    keep = np.ones(song.shape[-1], bool)
    keep[round(0.2 * SR) : round(0.5 * SR)] = False
    assert np.array_equal(out.T[:, keep], song.numpy()[:, keep])
    assert json.loads(Path("song.remixed.wav.json").read_text())["spans"] == [[0.2, 0.5]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strength", "1.5"], "between 0 and 1"),
        (["--strength", "-0.1"], "between 0 and 1"),
        (["--strength", "nan"], "between 0 and 1"),
        (["--mask", "3-1"], "ends before it starts"),
        (["--mask", "0.5-9"], "ends after the audio"),
        (["--negative-prompt", " "], "--negative-prompt is empty"),
        (["--negative-prompt", "noise", "--cfg", "1"], "--cfg 1"),
    ],
)
def test_remix_refuses_bad_values_in_one_line_without_a_file(run, args, message):
    _wav("song.wav")
    result = run("remix", "song.wav", *args, "-o", "out.wav")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not Path("out.wav").exists() and not Path("out.wav.json").exists()


def test_remix_has_help_with_an_example():
    result = runner.invoke(app, ["remix", "--help"])
    assert result.exit_code == 0 and "Example: jen1 remix" in result.output
