"""Model folders: save_pretrained / from_pretrained, locally and through a pre-filled Hub cache."""

import json
import shutil

import pytest
import torch

from jen1cli.model import HUB_PATTERNS, Jen1Model, ModelNotFoundError
from jen1cli.pipeline import Jen1Pipeline, SamplingOptions
from jen1cli.testing import tiny_model


def _outputs(model: Jen1Model):
    """Every part's output on fixed inputs: autoencoder, whitener, U-Net, text encoder."""
    torch.manual_seed(123)
    audio = 0.1 * torch.randn(1, 2, 4800)
    with torch.no_grad():
        latent = model.autoencoder.encode(audio)
        white = model.whitener(latent)
        states, mask = model.text_encoder(["a calm piano"])
        eps = model.unet(
            torch.randn_like(white),
            torch.tensor([500]),
            white,
            torch.ones(1, 1, white.shape[-1]),
            states,
            mask,
        )
        return latent, white, model.autoencoder.decode(latent, 4800), states, eps


def test_save_and_reload_is_bit_identical(tmp_path):
    model = tiny_model()
    folder = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == [
        "autoencoder.safetensors",
        "config.json",
        "text_encoder",
        "unet.safetensors",
        "whitener.safetensors",
    ]
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    reloaded = Jen1Model.from_pretrained(folder)
    for a, b in zip(_outputs(model), _outputs(reloaded), strict=True):
        assert torch.equal(a, b)


def test_generation_after_reload_is_bit_identical(tiny_model_dir):
    options = SamplingOptions(steps=2, seed=7)
    a = Jen1Pipeline.from_pretrained(str(tiny_model_dir)).generate(["rock"], 0.5, options)
    b = Jen1Pipeline.from_pretrained(str(tiny_model_dir)).generate(["rock"], 0.5, options)
    assert a.shape == (1, 2, 24000)
    assert torch.equal(a, b)


def test_save_over_existing_folder_replaces_it_atomically(tmp_path):
    folder = tiny_model(seed=0).save_pretrained(tmp_path / "m")
    (folder / "README.md").write_text("# card\n")
    tiny_model(seed=1).save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# card\n"  # the model card survives a re-export
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_config_json_is_readable_and_complete(tiny_model_dir):
    data = json.loads((tiny_model_dir / "config.json").read_text())
    assert set(data) >= {
        "autoencoder",
        "whitener",
        "unet",
        "text_encoder",
        "diffusion",
        "window_seconds",
    }
    assert data["text_encoder"]["name_or_path"] == "text_encoder"


def _fill_hub_cache(cache, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay a model folder out exactly as huggingface_hub's cache does (refs/main -> snapshot)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_hub_repo_id_loads_offline_from_the_cache(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fill_hub_cache(tmp_path / "hub", "someone/jen1-tiny", tiny_model_dir)
    model = Jen1Model.from_pretrained("someone/jen1-tiny", cache_dir=str(tmp_path / "hub"))
    local = Jen1Model.from_pretrained(tiny_model_dir)
    for a, b in zip(_outputs(model), _outputs(local), strict=True):
        assert torch.equal(a, b)
    assert model.source == "someone/jen1-tiny"
    assert "*.safetensors" in HUB_PATTERNS and not any(
        "bin" in p or "pt" in p for p in HUB_PATTERNS
    )


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="jen1 download"):
        Jen1Model.from_pretrained("nobody/nothing", cache_dir=str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="neither a model folder"):
        Jen1Model.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        Jen1Model.from_pretrained(str(tmp_path / "empty"))
