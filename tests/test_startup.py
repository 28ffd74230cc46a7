"""Bad input is refused before the heavy libraries load, so its error comes back well within 1 s."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from jen1cli.commands.common import UNET_DTYPE_NAMES

HEAVY = {"torch", "torchaudio", "transformers", "scipy"}

# (arguments, a piece of the one-line error); files are made by the `inputs` fixture.
CASES = [
    ("generate x --scheduler bogus", "unknown --scheduler 'bogus'"),
    ("generate x -d -5", "must be a positive number of seconds"),
    ("generate x --dtype bogus", "unknown --dtype 'bogus'"),
    ("generate x --device bogus", "unknown --device 'bogus'"),
    ("generate x -o existing.wav", "existing.wav already exists"),
    ("inpaint missing.wav --mask 1-2", "audio file not found: missing.wav"),
    ("inpaint in.wav --mask bogus", "--mask 'bogus' is not a span"),
    ("inpaint in.wav --mask 0.5-9", "--mask 0.5-9 ends after the audio"),
    ("continue in.wav -o existing.wav", "existing.wav already exists"),
    ("remix in.wav --strength 2", "--strength must be between 0 and 1"),
    ("encode missing.wav", "audio file not found: missing.wav"),
    ("decode junk.safetensors", "is not a safetensors latent file"),
    ("decode good.latent.safetensors", "good.wav already exists"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("inputs")
    sf.write(folder / "in.wav", np.zeros((48_000, 2), np.float32), 48_000)
    for name in ("existing.wav", "good.wav"):
        sf.write(folder / name, np.zeros((100, 2), np.float32), 48_000)
    (folder / "junk.safetensors").write_text("not a safetensors file")
    meta = {"length": "1000", "hop_length": "100", "latent_channels": "8", "sample_rate": "48000"}
    latents = {"latents": np.zeros((8, 10), np.float32)}
    save_file(latents, str(folder / "good.latent.safetensors"), metadata=meta)
    return folder


def _imported(stderr: str) -> set[str]:
    """Top-level package names in `python -X importtime` output."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize(("args", "message"), CASES, ids=[a for a, _ in CASES])
def test_bad_input_is_refused_before_torch_loads(inputs, args, message):
    env = {k: v for k, v in os.environ.items() if k != "JEN1_DEBUG"}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jen1cli", *args.split()],
        cwd=inputs,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    errors = [line for line in run.stderr.splitlines() if not line.startswith("import time:")]
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("jen1: error: ") and message in errors[0]
    assert not _imported(run.stderr) & HEAVY


def test_dtype_names_are_the_pipelines():
    from jen1cli.pipeline import Jen1Pipeline

    assert set(UNET_DTYPE_NAMES) == set(Jen1Pipeline.UNET_DTYPES)
