"""Ctrl-C (SIGINT) and SIGTERM in the middle of a command: exit 130 / 143, no file left behind,
and a training run saves a checkpoint that --resume continues.

The signals are real (os.kill); the tests only choose the moment, from a progress callback or from
inside the audio writer, when the temp file is half written.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import jen1cli.commands.common as common
from jen1cli.cli import app
from tests.training.test_trainer import write_dataset

SR = 48_000
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
runner = CliRunner()


def _song(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(round(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([tone, tone], axis=1).astype(np.float32), SR, subtype="FLOAT")
    return path


def _signal_during(monkeypatch, sig: int, moment: str) -> list[str]:
    """Send ``sig`` to this process at ``moment``: a progress stage ("denoise", "decode"), or
    "write", half-way through writing the output's temp file. Returns the temp files seen."""
    seen: list[str] = []
    if moment == "write":
        real_write = sf.SoundFile.write

        def write(self, data):
            half = len(data) // 2
            real_write(self, data[:half])
            self.flush()
            seen.append(self.name)
            os.kill(os.getpid(), sig)  # the handler runs at the next bytecode: right here
            real_write(self, data[half:])

        monkeypatch.setattr(sf.SoundFile, "write", write)
    else:

        def progress(stage: str, done: int, total: int) -> None:
            if stage == moment and not seen:
                seen.append(stage)
                os.kill(os.getpid(), sig)

        monkeypatch.setattr(common, "no_progress", progress)
    return seen


def _run(tiny_model_dir, *args: str):
    extra = ["--model", str(tiny_model_dir), "--device", "cpu", "--quiet"]
    return runner.invoke(app, [*args, *extra])


def _assert_stopped(result, sig: int, folder: Path, keep: set[str]) -> None:
    assert result.exit_code == EXIT[sig], result.output
    assert result.stderr.strip() in ("jen1: interrupted", "jen1: terminated")
    assert "Traceback" not in result.output
    left = {p.name for p in folder.iterdir()}
    assert left == keep, f"left behind: {left - keep}"


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.fixture(autouse=True)
def _ctrl_c_as_in_a_terminal():
    """Python's own SIGINT handler, even where the test runner was started with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig", SIGNALS, ids=["sigint", "sigterm"])
@pytest.mark.parametrize("moment", ["denoise", "write"])
def test_generate_interrupted(tiny_model_dir, tmp_path, monkeypatch, sig, moment):
    seen = _signal_during(monkeypatch, sig, moment)
    result = _run(
        tiny_model_dir, "generate", "x", "-d", "0.5", "--steps", "3", "-o", str(tmp_path / "g.wav")
    )
    assert seen, "the signal was never sent"
    _assert_stopped(result, sig, tmp_path, set())


@pytest.mark.parametrize("sig", SIGNALS, ids=["sigint", "sigterm"])
@pytest.mark.parametrize("moment", ["decode", "write"])
def test_decode_interrupted(tiny_model_dir, tmp_path, monkeypatch, sig, moment):
    latents = tmp_path / "s.latent.safetensors"
    assert (
        _run(tiny_model_dir, "encode", str(_song(tmp_path / "s.wav")), "-o", str(latents)).exit_code
        == 0
    )
    seen = _signal_during(monkeypatch, sig, moment)
    result = _run(tiny_model_dir, "decode", str(latents), "-o", str(tmp_path / "d.wav"))
    assert seen, "the signal was never sent"
    _assert_stopped(result, sig, tmp_path, {"s.wav", latents.name})


@pytest.mark.parametrize("sig", SIGNALS, ids=["sigint", "sigterm"])
@pytest.mark.parametrize("moment", ["denoise", "write"])
def test_inpaint_interrupted_keeps_the_previous_output(
    tiny_model_dir, tmp_path, monkeypatch, sig, moment
):
    song = _song(tmp_path / "s.wav")
    out = tmp_path / "out.wav"
    out.write_bytes(b"the previous take")
    seen = _signal_during(monkeypatch, sig, moment)
    args = ["inpaint", str(song), "--mask", "0.2-0.6", "--steps", "2", "-o", str(out)]
    result = _run(tiny_model_dir, *args, "--overwrite")
    assert seen, "the signal was never sent"
    _assert_stopped(result, sig, tmp_path, {"s.wav", "out.wav"})
    assert out.read_bytes() == b"the previous take"


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=["sigint", "sigterm"])
def test_train_interrupted_saves_a_checkpoint_that_resumes(tmp_path, sig):
    write_dataset(tmp_path / "data", count=4)
    run = tmp_path / "run"
    state = run / "checkpoints" / "autoencoder" / "trainer_state.json"
    args = ["train", str(tmp_path / "data"), "--output", str(run), "--config", "tiny"]
    args += ["--stage", "autoencoder", "--batch-size", "2", "--autoencoder-seconds", "0.25"]
    args += ["--checkpoint-every", "1", "--quiet"]

    def signal_after_first_checkpoint():
        deadline = time.monotonic() + 120
        while not state.is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), sig)

    watcher = threading.Thread(target=signal_after_first_checkpoint, daemon=True)
    watcher.start()
    result = runner.invoke(app, [*args, "--max-steps", "100000"])
    watcher.join()
    assert result.exit_code == EXIT[sig], result.output
    assert "checkpoint saved" in result.stderr and "--resume" in result.stderr
    step = json.loads(state.read_text())["step"]
    assert 1 <= step < 100000
    resumed = runner.invoke(app, [*args, "--max-steps", str(step + 1), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(state.read_text())["step"] == step + 1
    assert (run / "autoencoder.safetensors").is_file()


# --- real processes: the signal comes from outside, as from a terminal or a process manager ------
_BLOCKING_JEN1 = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even from a daemon
import jen1cli.commands.common as common
def progress(stage, done, total):
    if stage == "denoise":
        print("READY", file=sys.stderr, flush=True)
        while True:
            time.sleep(0.01)
common.no_progress = progress
from jen1cli.cli import main
sys.argv = ["jen1", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=["sigint", "sigterm"])
def test_a_real_process_killed_mid_generation_exits_cleanly(tiny_model_dir, tmp_path, sig):
    out = tmp_path / "g.wav"
    args = ["generate", "x", "-d", "0.5", "--steps", "3", "-o", str(out), "--quiet"]
    args += ["--model", str(tiny_model_dir), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_JEN1, *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stderr.readline().strip() == "READY"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    rest = proc.stderr.read()
    assert code == EXIT[sig], rest
    assert rest.strip() in ("jen1: interrupted", "jen1: terminated")
    assert list(tmp_path.iterdir()) == []
