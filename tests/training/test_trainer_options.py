"""Trainer options: --seconds with --latent-cache, the caption cache, --snapshot-every, and a
diffusion-only run into a new folder with --init-from (and its --resume)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from jen1cli.cli import app
from jen1cli.config import Jen1Config
from jen1cli.model import Jen1Model
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.testing import tiny_text_encoder
from jen1cli.training import diffusion as diffusion_stage
from jen1cli.training.trainer import TrainHooks, TrainingInterrupted, train
from tests.training.test_trainer import options, write_dataset

runner = CliRunner()
FRAME_RATE = 150  # the tiny config: 48 kHz / hop 320


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A run with its autoencoder, whitening and latent cache done (1 s clips, 0.5 s window)."""
    tmp = tmp_path_factory.mktemp("train-options")
    write_dataset(tmp / "data")
    opts = options(tmp, "base", stage="autoencoder", text_encoder=tiny_text_encoder())
    train(opts, TrainHooks(log=lambda line: None))
    opts.stage, opts.latent_cache = "whitening", True
    train(opts, TrainHooks(log=lambda line: None))
    assert len(list((tmp / "base" / "latents").glob("*.safetensors"))) == 6
    return tmp


def copy_run(prepared: Path, name: str) -> Path:
    shutil.copytree(prepared / "base", prepared / name)
    return prepared / name


@pytest.fixture
def seen_latents(monkeypatch):
    """The shape of every latent batch the diffusion objective receives."""
    shapes: list[tuple[int, ...]] = []
    real = diffusion_stage.diffusion_loss

    def recording(unet, latents, *args, **kwargs):
        shapes.append(tuple(latents.shape))
        return real(unet, latents, *args, **kwargs)

    monkeypatch.setattr(diffusion_stage, "diffusion_loss", recording)
    return shapes


@pytest.mark.parametrize("cached", [True, False])
def test_seconds_sets_the_diffusion_crop_with_and_without_the_latent_cache(
    prepared, seen_latents, cached
):
    run = copy_run(prepared, f"crop-{cached}")
    config = Jen1Config.load(run / "config.json")
    assert config.window_frames == 75  # 0.5 s: what the cache path cropped before
    lines: list[str] = []
    opts = options(prepared, run.name, stage="diffusion", latent_cache=cached, seconds=0.2)
    train(opts, TrainHooks(log=lines.append))
    # 0.2 s = 30 frames on both paths: cached latents and freshly encoded 0.2 s audio agree.
    assert seen_latents == [(2, 6, round(0.2 * FRAME_RATE))] * 2
    assert any(line.startswith("data:") for line in lines) is not cached
    # The throughput is logged on every log line.
    steps = [line for line in lines if line.startswith("diffusion step")]
    assert len(steps) == 2 and all("samples/s" in line for line in steps), lines
    assert not (run / "snapshots").exists()  # --snapshot-every 0 (the default) keeps none


def test_latent_cache_without_seconds_crops_the_model_window(prepared, seen_latents):
    run = copy_run(prepared, "crop-window")
    opts = options(prepared, run.name, stage="diffusion", latent_cache=True, seconds=None)
    opts.max_steps = 1
    train(opts, TrainHooks(log=lambda line: None))
    assert seen_latents == [(2, 6, 75)]


def test_the_text_encoder_encodes_each_caption_once_per_run(prepared):
    run = copy_run(prepared, "captions")
    encoder = tiny_text_encoder()
    encoder.cache_size = 2  # smaller than the data set: the trainer must raise it
    encoded: list[str] = []
    real = encoder._encode

    def counting(prompts):
        encoded.extend(prompts)
        return real(prompts)

    encoder._encode = counting
    # 6 clips, batch 2: 3 steps an epoch, so 9 steps read every caption 3 times.
    opts = options(
        prepared, run.name, stage="diffusion", latent_cache=True, max_steps=9, text_encoder=encoder
    )
    train(opts, TrainHooks(log=lambda line: None))
    metadata = (prepared / "data" / "metadata.jsonl").read_text().splitlines()
    captions = [json.loads(line)["text"] for line in metadata]
    assert len(set(captions)) > 2  # more distinct captions than the original cache held
    assert encoder.cache_size >= 6
    assert sorted(encoded) == sorted(set(captions))  # each one encoded exactly once


def test_snapshot_every_keeps_loadable_ema_weights(prepared):
    run = copy_run(prepared, "snapshots")
    opts = options(
        prepared, run.name, stage="diffusion", latent_cache=True, max_steps=4, snapshot_every=2
    )
    train(opts, TrainHooks(log=lambda line: None))
    folder = run / "snapshots"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["diffusion-step0000002.safetensors", "diffusion-step0000004.safetensors"]
    config = Jen1Config.load(run / "config.json")
    states = {}
    for step in (2, 4):
        path = folder / f"diffusion-step{step:07d}.safetensors"
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata() == {"step": str(step), "stage": "diffusion"}
        states[step] = load_file(path)
        unet = OmniUNet1d(config.unet)
        unet.load_state_dict(states[step], strict=True)  # every key, no extra
        assert {t.dtype for t in states[step].values()} == {torch.float32}
    # The last snapshot is the EMA the run exported; the earlier one is an earlier average.
    exported = load_file(run / "unet.safetensors")
    assert states[4].keys() == exported.keys()
    assert all(torch.equal(states[4][k], exported[k]) for k in exported)
    assert not all(torch.equal(states[2][k], states[4][k]) for k in exported)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cli_diffusion_only_run_from_a_model_folder(tiny_model_dir, tmp_path):
    """--stage diffusion --init-from MODEL into a new folder: the frozen parts and the text
    encoder come from MODEL, the U-Net trains, and the run exports a loadable model."""
    data = write_dataset(tmp_path / "data", count=4)
    run = tmp_path / "fresh-run"
    args = ["train", str(data), "--output", str(run), "--stage", "diffusion"]
    args += ["--init-from", str(tiny_model_dir), "--config", str(tiny_model_dir / "config.json")]
    args += ["--max-steps", "2", "--batch-size", "2", "--seconds", "0.5", "--warmup-steps", "0"]
    args += ["--snapshot-every", "1", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run)
    assert (run / "checkpoints" / "diffusion.done").is_file()
    assert (run / "text_encoder").is_dir()  # exported beside the model
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "diffusion-step0000001.safetensors",
        "diffusion-step0000002.safetensors",
    ]
    trained, source = Jen1Model.from_pretrained(run), Jen1Model.from_pretrained(tiny_model_dir)
    assert _same_weights(trained.text_encoder.model, source.text_encoder.model)
    assert _same_weights(trained.autoencoder, source.autoencoder)
    assert _same_weights(trained.whitener, source.whitener)
    assert not _same_weights(trained.unet, source.unet)
    with torch.no_grad():
        context, mask = trained.text_encoder(["a chord"])
        k = trained.config.unet.latent_channels
        out = trained.unet(torch.randn(1, k, 9), 500, torch.zeros(1, k, 9), torch.ones(1, 1, 9),
                           context, mask)  # fmt: skip
    assert torch.isfinite(out).all()


def test_diffusion_only_run_from_a_hub_model_id(tiny_model_dir, tmp_path, monkeypatch):
    """--init-from owner/name (a model in the Hugging Face cache) whose text encoder lives inside
    the repo: the encoder is found in the snapshot folder, not at ./owner/name/text_encoder."""
    from tests.test_model import _fill_hub_cache

    _fill_hub_cache(tmp_path / "hub", "someone/jen1-tiny", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "data", count=2)
    opts = options(
        tmp_path,
        "hub-run",
        stage="diffusion",
        config=Jen1Config.load(tiny_model_dir / "config.json"),
        init_from="someone/jen1-tiny",
        max_steps=1,
    )
    train(opts, TrainHooks(log=lambda line: None))
    trained = Jen1Model.from_pretrained(tmp_path / "hub-run")
    source = Jen1Model.from_pretrained(tiny_model_dir)
    assert _same_weights(trained.text_encoder.model, source.text_encoder.model)


def test_interrupted_diffusion_only_run_resumes_without_init_from(tiny_model_dir, tmp_path):
    """--stage diffusion --init-from MODEL into a new folder, interrupted: --resume alone
    continues it, from the model the run started from (its whitening) and the checkpoint."""
    write_dataset(tmp_path / "data", count=4)
    run, config = tmp_path / "run", Jen1Config.load(tiny_model_dir / "config.json")

    def interrupt_at_two(stage, step, total):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal path: saves, then stops

    first = options(tmp_path, "run", stage="diffusion", config=config, max_steps=4)
    first.init_from = str(tiny_model_dir)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(first, TrainHooks(progress=interrupt_at_two, log=lambda line: None))
    assert not (run / "checkpoints" / "diffusion.done").exists()
    lines: list[str] = []
    again = options(tmp_path, "run", stage="diffusion", config=config, max_steps=4, resume=True)
    assert again.init_from is None
    train(again, TrainHooks(log=lines.append))
    steps = [line.split(":")[0] for line in lines if line.startswith("diffusion step")]
    assert "diffusion: resumed at step 2" in lines
    assert steps == ["diffusion step 3/4", "diffusion step 4/4"], lines
    assert (run / "checkpoints" / "diffusion.done").is_file()
    trained, source = Jen1Model.from_pretrained(run), Jen1Model.from_pretrained(tiny_model_dir)
    assert _same_weights(trained.whitener, source.whitener)
    assert _same_weights(trained.autoencoder, source.autoencoder)
    assert _same_weights(trained.text_encoder.model, source.text_encoder.model)
    assert not _same_weights(trained.unet, source.unet)
