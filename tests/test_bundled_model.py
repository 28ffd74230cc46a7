"""The model shipped in models/jen1-demo: within budget, loads offline, makes stereo audio."""

from pathlib import Path

import pytest
import torch

from jen1cli.commands.common import default_model
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "jen1-demo"


def test_the_cli_default_is_the_bundled_model(monkeypatch):
    monkeypatch.delenv("JEN1_MODEL", raising=False)
    assert Path(default_model()).resolve() == BUNDLED


def test_weights_are_safetensors_within_the_40_mb_budget():
    weights = sorted(BUNDLED.glob("*.safetensors"))
    assert [w.name for w in weights] == [
        "autoencoder.safetensors",
        "unet.safetensors",
        "whitener.safetensors",
    ]
    assert sum(w.stat().st_size for w in weights) <= 40 * 1024**2
    assert not [
        p for p in BUNDLED.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")
    ]
    assert (BUNDLED / "README.md").is_file()


@pytest.mark.slow
def test_bundled_model_generates_offline():
    pipe = Jen1Pipeline.from_pretrained(str(BUNDLED), local_files_only=True)
    assert pipe.model.whitener.fitted
    audio = pipe.generate(
        ["a mellow piano ballad in D minor at 72 BPM"], 1.0, SamplingOptions(steps=2, seed=0)
    )
    assert audio.shape == (1, 2, 48_000) and torch.isfinite(audio).all()
    assert audio.abs().max() > 1e-3  # not silence
