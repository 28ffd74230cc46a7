"""Two processes writing the same output path: every reader sees one whole version, never a mixed
or truncated file; without --overwrite exactly one wins; an audio file and its sidecar always
come from the same run."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 48_000
ROUNDS = 20


def _version(who: int) -> np.ndarray:
    """Writer ``who``'s audio [C, N]: lengths and values differ, so a mix would show."""
    n = (3 - who) * SR  # 3 s or 2 s of float32 stereo: long enough to be caught mid-write
    ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    return np.stack([ramp * (who + 1), -ramp]) * 0.9


def _writer(path: str, who: int, rounds: int, barrier, overwrite: bool, results) -> None:
    import torch

    from jen1cli.audio import AudioError, save_audio

    audio = torch.from_numpy(_version(who))
    for r in range(rounds):
        barrier.wait()
        target = Path(path) if overwrite else Path(path).with_name(f"new-{r}.wav")
        try:
            save_audio(target, audio, SR, overwrite=overwrite)
            results.put((r, who, "ok"))
        except AudioError as err:
            results.put((r, who, str(err)))


def _pair_writer(path: str, who: int, rounds: int, barrier) -> None:
    import torch

    from jen1cli.atomic_files import atomic_write, publish_together
    from jen1cli.audio import save_audio

    audio = torch.from_numpy(_version(who))
    sidecar = Path(path + ".json")
    for _ in range(rounds):
        barrier.wait()
        with publish_together():
            save_audio(path, audio, SR, overwrite=True)
            atomic_write(sidecar, lambda tmp: tmp.write_text(json.dumps(who)), overwrite=True)
        barrier.wait()  # the round is over: the test looks at the pair


def _which(path: Path) -> int:
    """Which writer's version the file holds; fails on anything else (mixed, truncated)."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR
    for who in (0, 1):
        if data.shape == _version(who).T.shape and np.array_equal(data, _version(who).T):
            return who
    raise AssertionError(f"a mixed or truncated file: {data.shape}")


def _start(target, *args):
    context = mp.get_context("spawn")
    processes = [context.Process(target=target, args=(*args[:1], who, *args[1:])) for who in (0, 1)]
    for p in processes:
        p.start()
    return processes


def _join(processes) -> None:
    for p in processes:
        p.join(120)
        assert p.exitcode == 0


@pytest.mark.slow
def test_two_writers_overwriting_one_path_never_leave_a_mixed_file(tmp_path):
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    path = tmp_path / "out.wav"
    processes = _start(_writer, str(path), ROUNDS, barrier, True, results)
    seen = []
    while any(p.is_alive() for p in processes):  # read as fast as possible while they write
        if path.exists():
            seen.append(_which(path))
    _join(processes)
    outcomes = [results.get(timeout=10) for _ in range(2 * ROUNDS)]
    assert all(status == "ok" for _, _, status in outcomes)
    assert _which(path) in (0, 1) and len(seen) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temp file left


@pytest.mark.slow
def test_two_writers_without_overwrite_exactly_one_wins(tmp_path):
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = _start(_writer, str(tmp_path / "out.wav"), ROUNDS, barrier, False, results)
    _join(processes)
    outcomes = [results.get(timeout=10) for _ in range(2 * ROUNDS)]
    for r in range(ROUNDS):
        mine = [(who, status) for rr, who, status in outcomes if rr == r]
        winners = [who for who, status in mine if status == "ok"]
        assert len(winners) == 1, mine
        loser = [status for _, status in mine if status != "ok"][0]
        assert "already exists" in loser
        assert _which(tmp_path / f"new-{r}.wav") == winners[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"new-{r}.wav" for r in range(ROUNDS)
    )


@pytest.mark.slow
def test_an_audio_file_and_its_sidecar_come_from_the_same_run(tmp_path):
    context = mp.get_context("spawn")
    barrier = context.Barrier(3)
    path = tmp_path / "out.wav"
    processes = _start(_pair_writer, str(path), ROUNDS, barrier)
    for _ in range(ROUNDS):
        barrier.wait()  # both publish at once
        barrier.wait()  # both done
        assert _which(path) == json.loads((tmp_path / "out.wav.json").read_text())
    _join(processes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "out.wav.json"]


@pytest.mark.slow
def test_two_jen1_processes_with_one_output(tiny_model_dir, tmp_path):
    """End to end: two `jen1 generate --overwrite` runs at once; the file and its sidecar are one
    run's, byte for byte as that run makes them alone."""
    out = tmp_path / "out.wav"
    base = [sys.executable, "-m", "jen1cli", "generate", "x", "-d", "0.5", "--steps", "2"]
    base += ["--model", str(tiny_model_dir), "--device", "cpu", "--quiet", "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    same = [subprocess.Popen([*base, "-o", str(out), "--seed", str(s)], env=env) for s in (1, 2)]
    alone = {s: tmp_path / f"alone-{s}.wav" for s in (1, 2)}  # each seed's file, made apart
    apart = [
        subprocess.Popen([*base, "-o", str(alone[s]), "--seed", str(s)], env=env) for s in (1, 2)
    ]
    assert [run.wait(timeout=300) for run in same + apart] == [0, 0, 0, 0]
    seed = json.loads((tmp_path / "out.wav.json").read_text())["seed"]
    assert out.read_bytes() == alone[seed].read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
