"""The `jen1` commands end to end on a tiny random model: files, loudness, exactness, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from jen1cli.audio import integrated_loudness, true_peak_db
from jen1cli.cli import app

SR = 48_000
runner = CliRunner()


@pytest.fixture()
def run(tiny_model_dir, monkeypatch, tmp_path):
    """Invoke jen1 with the tiny model, on CPU, quietly, in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, model: bool = True):
        extra = ["--model", str(tiny_model_dir), "--device", "cpu", "--quiet"] if model else []
        return runner.invoke(app, [*args, *extra])

    return invoke


def _wav(path: Path, seconds: float, sr: int = SR, channels: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    data = np.stack([tone] * channels, axis=1) + 0.01 * rng.standard_normal((t.size, channels))
    sf.write(path, data.astype(np.float32), sr, subtype="FLOAT")
    return path


def _read(path):
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.T, sr


# --- generate ----------------------------------------------------------------------------------
def test_generate_writes_exact_loud_stereo_wav_with_sidecar(run):
    result = run(
        "generate", "ambient synth pad", "-d", "1.3", "-o", "pad.wav", "--seed", "5", "--steps", "2"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "pad.wav"
    audio, sr = _read("pad.wav")
    assert sr == SR and audio.shape == (2, round(1.3 * SR))
    assert np.isfinite(audio).all()
    import torch

    clip = torch.from_numpy(audio)
    assert abs(integrated_loudness(clip, SR) - (-14.0)) <= 0.5
    assert true_peak_db(clip, SR) <= -1.0 + 1e-3
    meta = json.loads(Path("pad.wav.json").read_text())
    assert meta["prompt"] == "ambient synth pad" and meta["seed"] == 5 and meta["steps"] == 2
    assert {"guidance_scale", "scheduler", "model", "jen1_version"} <= set(meta)


def test_generate_same_seed_same_file_and_lufs_option(run):
    for name in ("a.wav", "b.wav"):
        assert (
            run(
                "generate", "rock", "-d", "0.6", "-o", name, "--seed", "9", "--steps", "2"
            ).exit_code
            == 0
        )
    assert Path("a.wav").read_bytes() == Path("b.wav").read_bytes()
    assert (
        run(
            "generate",
            "rock",
            "-d",
            "0.6",
            "-o",
            "q.wav",
            "--seed",
            "9",
            "--steps",
            "2",
            "--lufs",
            "-23",
        ).exit_code
        == 0
    )
    import torch

    assert abs(integrated_loudness(torch.from_numpy(_read("q.wav")[0]), SR) + 23) <= 0.5


def test_generate_n_writes_variations_from_one_batch(run):
    result = run(
        "generate", "jazz", "-d", "0.5", "-n", "4", "-o", "v.wav", "--seed", "1", "--steps", "2"
    )
    assert result.exit_code == 0, result.output
    paths = result.stdout.split()
    assert paths == [f"v-{i}.wav" for i in range(1, 5)]
    clips = [_read(p)[0] for p in paths]
    assert all(c.shape == (2, SR // 2) for c in clips)
    assert not np.array_equal(clips[0], clips[1])


@pytest.mark.parametrize("duration", ["0", "-3", "nan", "100000"])
def test_generate_refuses_bad_durations_before_work(run, duration):
    result = run("generate", "x", "-d", duration, "-o", "x.wav")
    assert result.exit_code == 2
    assert "--duration" in result.output and "Traceback" not in result.output
    assert not Path("x.wav").exists()


def test_existing_output_needs_overwrite(run):
    Path("keep.wav").write_bytes(b"precious")
    result = run("generate", "x", "-d", "0.3", "-o", "keep.wav", "--steps", "1")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert Path("keep.wav").read_bytes() == b"precious"
    assert (
        run("generate", "x", "-d", "0.3", "-o", "keep.wav", "--steps", "1", "--overwrite").exit_code
        == 0
    )
    assert _read("keep.wav")[0].shape == (2, round(0.3 * SR))


def test_unwritable_or_missing_output_folder(run, monkeypatch):
    result = run("generate", "x", "-d", "0.3", "-o", "nope/out.wav")
    assert result.exit_code == 2 and "does not exist" in result.output
    Path("ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if Path(p).name == "ro" else real_access(p, m)
    )
    result = run("generate", "x", "-d", "0.3", "-o", "ro/out.wav")
    assert result.exit_code == 2 and "not writable" in result.output
    assert not list(Path("ro").iterdir())


def test_bad_scheduler_and_model(run, tmp_path):
    result = run("generate", "x", "--scheduler", "magic", "-o", "x.wav")
    assert result.exit_code == 2 and "dpmsolver++" in result.output
    result = runner.invoke(
        app, ["generate", "x", "--model", str(tmp_path / "nowhere"), "-o", "x.wav", "--quiet"]
    )
    assert result.exit_code == 2 and "neither a model folder" in result.output


# --- inpaint -----------------------------------------------------------------------------------
def test_inpaint_preserves_outside_the_mask_sample_for_sample(run):
    _wav(
        Path("song.wav"), 1.5, sr=44_100, channels=1
    )  # mono 44.1 kHz: brought to 48 kHz stereo first
    result = run(
        "inpaint",
        "song.wav",
        "--mask",
        "0.3-0.5",
        "--mask",
        "1.0-1.2",
        "-o",
        "out.wav",
        "--steps",
        "2",
    )
    assert result.exit_code == 0, result.output
    out, sr = _read("out.wav")
    from jen1cli.audio import load_audio

    ref = load_audio("song.wav")[0].numpy()
    assert sr == SR and out.shape == ref.shape
    keep = np.ones(ref.shape[1], bool)
    for s, e in [(0.3, 0.5), (1.0, 1.2)]:
        keep[round(s * SR) : round(e * SR)] = False
    assert np.array_equal(out[:, keep], ref[:, keep])
    assert not np.array_equal(out[:, ~keep], ref[:, ~keep])


def test_inpaint_merges_overlapping_spans_with_a_note(run):
    _wav(Path("song.wav"), 1.0)
    result = run(
        "inpaint",
        "song.wav",
        "--mask",
        "0.2-0.5",
        "--mask",
        "0.4-0.6",
        "-o",
        "o.wav",
        "--steps",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "merged into 0.2-0.6" in result.stderr


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("6-4", "ends before it starts"),
        ("4:6", "START-END"),
        ("abc", "START-END"),
        ("0.5-9", "ends after the audio"),
    ],
)
def test_inpaint_refuses_bad_masks(run, mask, message):
    _wav(Path("song.wav"), 1.0)
    result = run("inpaint", "song.wav", "--mask", mask, "-o", "o.wav")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not Path("o.wav").exists()


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "folder"])
def test_bad_audio_inputs(run, kind):
    path = Path("in.wav")
    if kind == "text":
        path.write_text("not audio at all")
    elif kind == "empty":
        sf.write(path, np.zeros((0, 2), np.float32), SR)
    elif kind == "folder":
        path.mkdir()
    for args in (
        ["inpaint", "in.wav", "--mask", "0-0.1"],
        ["continue", "in.wav", "--seconds", "1"],
        ["encode", "in.wav"],
    ):
        result = run(*args, "-o", "o.wav" if args[0] != "encode" else "o.latent.safetensors")
        assert result.exit_code == 2, (args, result.output)
        assert (
            result.output.startswith("jen1: error:")
            and len(result.output.strip().splitlines()) == 1
        )
    assert not Path("o.wav").exists()


# --- continue ----------------------------------------------------------------------------------
def test_continue_past_the_window_keeps_the_input(run):
    _wav(Path("intro.wav"), 0.6)
    result = run("continue", "intro.wav", "--seconds", "1.7", "-o", "long.wav", "--steps", "2")
    assert result.exit_code == 0, result.output
    out, _ = _read("long.wav")
    ref, _ = _read("intro.wav")
    n = ref.shape[1]
    assert out.shape == (2, n + round(1.7 * SR))
    seam = round(0.05 * SR)
    assert np.array_equal(out[:, : n - seam], ref[:, : n - seam])
    # the input keeps its loudness: no re-normalisation of the given part
    assert np.array_equal(out[:, :1000], ref[:, :1000])


def test_bf16_unet_generates_close_to_fp32_and_keeps_known_audio_exact(run):
    """--dtype bf16 runs only the U-Net in bfloat16: the sidecar says so, the result stays near
    the fp32 one, and continuation still keeps its input sample for sample."""
    for dtype in ("fp32", "bf16"):
        args = ("generate", "pad", "-d", "1", "-o", f"{dtype}.wav", "--seed", "3", "--steps", "3")
        result = run(*args, "--dtype", dtype)
        assert result.exit_code == 0, result.output
        assert json.loads(Path(f"{dtype}.wav.json").read_text())["dtype"] == dtype
    a, _ = _read("fp32.wav")
    b, _ = _read("bf16.wav")
    assert np.isfinite(b).all() and not np.array_equal(a, b)
    assert np.linalg.norm(a - b) < 0.25 * np.linalg.norm(a)  # bf16 rounding, not another sample
    _wav(Path("intro.wav"), 0.6)
    result = run("continue", "intro.wav", "--seconds", "0.5", "-o", "c.wav", "--dtype", "bf16")
    assert result.exit_code == 0, result.output
    out, _ = _read("c.wav")
    ref, _ = _read("intro.wav")
    keep = ref.shape[1] - round(0.05 * SR)
    assert np.array_equal(out[:, :keep], ref[:, :keep])


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "pad", "--steps", "0"], "Invalid value for '--steps'"),
        (["eval", "a", "b", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "--help" in lines[0], result.output


def test_the_default_dtype_keeps_a_small_unet_in_fp32_and_the_sidecar_names_it(run):
    """--dtype auto (the default) runs a U-Net under 100 M parameters in fp32 on any machine;
    the sidecar records the precision that ran, not "auto"."""
    result = run("generate", "pad", "-d", "1", "-o", "auto.wav", "--seed", "3", "--steps", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("auto.wav.json").read_text())["dtype"] == "fp32"


@pytest.mark.parametrize("dtype, message", [("fp16", "for GPUs"), ("int8", "unknown --dtype")])
def test_dtype_refusals(run, dtype, message):
    result = run("generate", "pad", "-d", "1", "-o", "x.wav", "--dtype", dtype)
    assert result.exit_code == 2 and message in result.output
    assert not Path("x.wav").exists()


@pytest.mark.parametrize("seconds", ["0", "-1", "1e9"])
def test_continue_refuses_bad_seconds(run, seconds):
    _wav(Path("intro.wav"), 0.3)
    result = run("continue", "intro.wav", "--seconds", seconds, "-o", "o.wav")
    assert result.exit_code == 2 and "--seconds" in result.output


# --- encode / decode ---------------------------------------------------------------------------
def test_encode_decode_keeps_duration(run):
    _wav(Path("short.wav"), 3.3, sr=44_100, channels=1)
    assert run("encode", "short.wav", "-o", "short.latent.safetensors").exit_code == 0
    from safetensors import safe_open

    with safe_open("short.latent.safetensors", "pt") as f:
        meta = f.metadata()
        assert f.get_tensor("latents").shape[0] == 6
    assert {"model", "sample_rate", "hop_length", "length"} <= set(meta)
    result = run("decode", "short.latent.safetensors", "-o", "back.wav")
    assert result.exit_code == 0, result.output
    audio, sr = _read("back.wav")
    assert sr == SR and audio.shape == (2, round(3.3 * SR))


def test_decode_refuses_non_latent_files(run):
    Path("x.safetensors").write_bytes(b"garbage")
    result = run("decode", "x.safetensors", "-o", "y.wav")
    assert result.exit_code == 2 and "jen1 encode" in result.output


# --- download ----------------------------------------------------------------------------------
def test_download_unknown_model_says_how_to_fix(run, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["download", "nobody/nothing-here"])
    assert result.exit_code == 2
    assert (
        "could not download 'nobody/nothing-here'" in result.output and "--model" in result.output
    )


def test_download_from_cache_then_generate_offline(tiny_model_dir, monkeypatch, tmp_path):
    from tests.test_model import _fill_hub_cache

    _fill_hub_cache(tmp_path / "hub", "someone/jen1-tiny", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    result = runner.invoke(app, ["download", "someone/jen1-tiny"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "generate",
            "x",
            "-d",
            "0.3",
            "--model",
            "someone/jen1-tiny",
            "--steps",
            "1",
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output


# --- help and the real executable --------------------------------------------------------------
@pytest.mark.parametrize(
    "command", ["generate", "inpaint", "continue", "encode", "decode", "download", "train", "eval"]
)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example: jen1 " in result.output


def test_installed_executable_runs(tiny_model_dir, tmp_path):
    exe = Path(sys.executable).parent / "jen1"
    assert exe.exists(), "the jen1 console script is not installed in this environment"
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.startswith(
        "jen1 "
    )
    out = tmp_path / "x.wav"
    proc = subprocess.run(
        [
            exe,
            "generate",
            "a",
            "-d",
            "0.4",
            "-o",
            out,
            "--model",
            tiny_model_dir,
            "--steps",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and out.exists()
    # The process ends by os._exit after generate (cli.main): the file and its sidecar are whole.
    assert sf.info(out).frames == round(0.4 * SR)
    assert json.loads(out.with_name("x.wav.json").read_text())["steps"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"
    bad = subprocess.run(
        [exe, "inpaint", tmp_path / "none.wav", "--mask", "1-2"], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2
        and "Traceback" not in bad.stderr
        and len(bad.stderr.strip().splitlines()) == 1
    )
