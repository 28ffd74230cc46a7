"""`--negative-prompt`: its states replace the unconditional branch of guidance; it changes the
output, is recorded in every sidecar, and bad values are refused."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn
from typer.testing import CliRunner

from jen1cli.cli import app
from jen1cli.diffusion.sampling import predict_noise, sample
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions
from tests.tiny_fourier import tiny_fourier_model

SR = 48_000
K, T, D = 4, 12, 8
runner = CliRunner()


class ContextEcho(nn.Module):
    """ε̂ = the mean of the attended context states (zero without text), recording each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []
        self.weight = nn.Parameter(torch.ones(()))

    def forward(
        self, sample, timestep, masked_latent, mask, context, context_mask, use_text, causal
    ):
        self.calls.append({"context": context, "mask": context_mask, "use_text": use_text})
        keep = torch.ones(context.shape[:2]) if context_mask is None else context_mask.float()
        keep = keep[..., None]
        mean = (context * keep).sum(1) / keep.sum(1)  # [B, D]
        if use_text is not None:
            mean = mean * use_text[:, None].float()
        return self.weight * mean[:, :K, None].expand(-1, -1, sample.shape[-1])


def test_negative_states_take_the_unconditional_branch():
    unet = ContextEcho()
    g = torch.Generator().manual_seed(0)
    positive, negative = torch.randn(2, 3, D, generator=g), torch.randn(2, 5, D, generator=g)
    x = torch.zeros(2, K, T)
    args = (
        x,
        torch.tensor(10),
        x,
        torch.ones(2, 1, T),
        positive,
        torch.ones(2, 3, dtype=torch.bool),
    )
    eps = predict_noise(
        unet, *args, causal=False, guidance_scale=3.0, negative_context=negative,
        negative_context_mask=torch.ones(2, 5, dtype=torch.bool),
    )  # fmt: skip
    call = unet.calls[-1]
    assert call["use_text"] is None  # both halves attend to text
    assert call["context"].shape == (4, 5, D)  # padded to the longer prompt
    assert torch.equal(call["mask"][:2].sum(1), torch.tensor([3, 3]))
    assert torch.equal(call["context"][2:], negative)
    e_pos, e_neg = positive.mean(1)[:, :K, None], negative.mean(1)[:, :K, None]
    assert torch.allclose(eps, e_neg + 3.0 * (e_pos - e_neg), atol=1e-6)
    # without a negative prompt the second half is the no-text branch, as before
    eps = predict_noise(unet, *args, causal=False, guidance_scale=3.0)
    assert unet.calls[-1]["use_text"].tolist() == [True, True, False, False]
    assert torch.allclose(eps, 3.0 * e_pos.expand(-1, -1, T), atol=1e-6)


def test_sample_passes_the_negative_prompt_on_every_step():
    unet = ContextEcho()
    context = torch.randn(1, 3, D)
    negative = torch.randn(1, 2, D)
    common = dict(shape=(2, K, T), context=context, num_inference_steps=3, guidance_scale=2.0)
    a = sample(
        unet, **common, negative_context=negative, generator=torch.Generator().manual_seed(0)
    )
    assert len(unet.calls) == 3 and all(c["use_text"] is None for c in unet.calls)
    b = sample(unet, **common, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)


@pytest.fixture(scope="module")
def pipe():
    return Jen1Pipeline(tiny_fourier_model())


def test_negative_prompt_changes_generation_reproducibly(pipe):
    plain = SamplingOptions(steps=2, seed=0)
    away = SamplingOptions(steps=2, seed=0, negative_prompt="distorted noise")
    a = pipe.generate(["calm piano"], 0.6, plain)
    b = pipe.generate(["calm piano"], 0.6, away)
    assert not torch.allclose(a, b, atol=1e-3)
    assert torch.equal(b, pipe.generate(["calm piano"], 0.6, away))


# --- the commands ------------------------------------------------------------------------------
@pytest.fixture()
def run(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    sf.write("song.wav", np.stack([tone, tone], axis=1), SR, subtype="FLOAT")

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--model", str(tiny_model_dir), "--device", "cpu", "-q"])

    return invoke


COMMANDS = {
    "generate": ["generate", "calm piano", "-d", "0.5"],
    "inpaint": ["inpaint", "song.wav", "--mask", "0.2-0.6", "-p", "calm piano"],
    "continue": ["continue", "song.wav", "-s", "0.5", "-p", "calm piano"],
    "remix": ["remix", "song.wav", "-p", "calm piano", "--strength", "0.7"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_negative_prompt_is_used_and_recorded(run, command):
    base = [*COMMANDS[command], "--seed", "1", "--steps", "2"]
    assert run(*base, "-o", "plain.wav").exit_code == 0
    result = run(*base, "--negative-prompt", "harsh noise", "-o", "away.wav")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("away.wav.json").read_text())["negative_prompt"] == "harsh noise"
    assert json.loads(Path("plain.wav.json").read_text())["negative_prompt"] is None
    plain, _ = sf.read("plain.wav", dtype="float32")
    away, _ = sf.read("away.wav", dtype="float32")
    assert plain.shape == away.shape and not np.array_equal(plain, away)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--negative-prompt", ""], "is empty"),
        (["--negative-prompt", "x", "--cfg", "1"], "--cfg 1"),
    ],
)
def test_bad_negative_prompts_are_refused_without_a_file(run, command, args, message):
    result = run(*COMMANDS[command], *args, "-o", "out.wav")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not Path("out.wav").exists() and not Path("out.wav.json").exists()
