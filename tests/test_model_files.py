"""Broken model folders and latent files: each a one-line error naming the file, exit 2, and a
config asking for a huge model refused before anything is allocated."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from jen1cli.cli import app
from jen1cli.model import Jen1Model
from jen1cli.model_files import ModelFolderError
from jen1cli.testing import write_tiny_model

runner = CliRunner()
SR = 48_000


@pytest.fixture()
def model(tiny_model_dir, tmp_path) -> Path:
    """A private copy of the tiny model folder, to break."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _config(model: Path) -> dict:
    return json.loads((model / "config.json").read_text())


def _retensor(path: Path, change) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BREAKS = {
    "missing unet": (lambda m: (m / "unet.safetensors").unlink(), "unet.safetensors is missing"),
    "truncated header": (
        lambda m: _truncate(m / "whitener.safetensors", 0.001),
        "not a readable safetensors file",
    ),
    "truncated data": (
        lambda m: _truncate(m / "autoencoder.safetensors", 0.5),
        "not a readable safetensors file",
    ),
    "wrong shape": (
        lambda m: _retensor(m / "unet.safetensors", _grow),
        "config.json makes it",
    ),
    "wrong dtype": (
        lambda m: _retensor(m / "whitener.safetensors", _to_int),
        "but must be float",
    ),
    "missing tensor": (
        lambda m: _retensor(m / "unet.safetensors", lambda t: t.pop(sorted(t)[0])),
        "lacks tensor",
    ),
    "NaN weights": (
        lambda m: _retensor(m / "unet.safetensors", _nan),
        "holds NaN or infinite values",
    ),
    "bad JSON": (
        lambda m: (m / "config.json").write_text('{"unet": {'),
        "not readable JSON",
    ),
    "wrong field type": (
        lambda m: _edit(m, lambda c: c["unet"].update(channels="16, 32")),
        "unet.channels is",
    ),
    "zero window": (
        lambda m: _edit(m, lambda c: c.update(window_seconds=0)),
        "window_seconds must be positive",
    ),
    "unknown sampler": (
        lambda m: _edit(m, lambda c: c["diffusion"].update(beta_schedule="wobbly")),
        "diffusion schedule is broken",
    ),
    "broken text encoder": (
        lambda m: (m / "text_encoder" / "config.json").write_text("{"),
        "cannot load the text encoder",
    ),
}


def _grow(tensors):
    key = next(k for k in sorted(tensors) if tensors[k].dim() == 2)
    tensors[key] = torch.cat([tensors[key], tensors[key][:1]])


def _to_int(tensors):
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    tensors[key] = tensors[key].to(torch.int64)


def _nan(tensors):
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")


def _edit(model: Path, change) -> None:
    config = _config(model)
    change(config)
    (model / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_model_folder_is_one_line_exit_2(model, tmp_path, name):
    breaks, message = BREAKS[name]
    breaks(model)
    with pytest.raises(ModelFolderError, match=message):
        Jen1Model.from_pretrained(model)
    args = ["generate", "x", "-d", "0.3", "-o", str(tmp_path / "g.wav"), "--model", str(model)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jen1: error:") and message in lines[0]
    assert not (tmp_path / "g.wav").exists()


def test_a_config_asking_for_a_huge_model_is_refused_before_allocating(model):
    """2**40 latent channels would need terabytes; the meta-device build compares shapes first."""
    _edit(model, lambda c: c["unet"].update(channels=[2**20, 2**21]))
    with pytest.raises(ModelFolderError, match="config.json makes it"):
        Jen1Model.from_pretrained(model)


def test_a_float16_export_still_loads(model):
    _retensor(model / "unet.safetensors", lambda t: t.update({k: v.half() for k, v in t.items()}))
    loaded = Jen1Model.from_pretrained(model)
    assert next(loaded.unet.parameters()).dtype == torch.float32


# --- latent files --------------------------------------------------------------------------------
@pytest.fixture()
def latents(tiny_model_dir, tmp_path) -> Path:
    song = tmp_path / "s.wav"
    sf.write(song, 0.1 * np.ones((SR // 2, 2), np.float32), SR)
    out = tmp_path / "s.latent.safetensors"
    args = ["encode", str(song), "-o", str(out), "--model", str(tiny_model_dir), "--quiet"]
    assert runner.invoke(app, [*args, "--device", "cpu"]).exit_code == 0
    return out


def _relatent(path: Path, tensor=None, **meta) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        old, metadata = f.get_tensor("latents"), dict(f.metadata())
    for key, value in meta.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    save_file({"latents": old if tensor is None else tensor(old)}, str(path), metadata=metadata)


LATENT_BREAKS = {
    "too few channels": (dict(tensor=lambda t: t[:-1].contiguous()), "latent channels"),
    "a third dimension": (dict(tensor=lambda t: t[None]), "lacks jen1 latent metadata"),
    "integers": (dict(tensor=lambda t: t.to(torch.int32)), "holds int32 latents"),
    "NaN": (dict(tensor=lambda t: t * float("nan")), "NaN or infinite latents"),
    "length tampered": (dict(length="7"), "do not make 7 samples"),
    "length not a number": (dict(length="many"), "broken jen1 latent metadata"),
    "hop missing": (dict(hop_length=None), "lacks jen1 latent metadata"),
    "another sample rate": (dict(sample_rate="44100"), "other latent settings"),
    "another latent space": (
        dict(latent_space="0123456789abcdef"),
        "latent space 0123456789abcdef",
    ),
}


@pytest.mark.parametrize("name", list(LATENT_BREAKS))
def test_a_broken_latent_file_is_one_line_exit_2(tiny_model_dir, latents, tmp_path, name):
    change, message = LATENT_BREAKS[name]
    _relatent(latents, **change)
    out = tmp_path / "d.wav"
    args = ["decode", str(latents), "-o", str(out), "--model", str(tiny_model_dir), "--quiet"]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_latents_of_another_model_are_refused_even_with_the_same_shapes(latents, tmp_path):
    other = write_tiny_model(tmp_path / "other", seed=1)  # same config, other weights
    args = ["decode", str(latents), "-o", str(tmp_path / "d.wav"), "--model", str(other)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--quiet"])
    assert result.exit_code == 2 and "decode it with that --model" in result.stderr
    assert not (tmp_path / "d.wav").exists()


def test_the_model_id_is_a_name_the_fingerprint_decides(tiny_model_dir, latents, tmp_path):
    """A renamed or moved model folder decodes its own latents: the id is not compared."""
    _relatent(latents, model="someone/else")
    moved = Path(shutil.copytree(tiny_model_dir, tmp_path / "moved"))
    args = ["decode", str(latents), "-o", str(tmp_path / "d.wav"), "--model", str(moved)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "d.wav")).frames == SR // 2
