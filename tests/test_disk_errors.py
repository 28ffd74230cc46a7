"""A full disk (ENOSPC), a read-only file system (EROFS) or a forbidden folder (EACCES) while the
output is written: one error line, exit 2, the previous output and its sidecar untouched, no temp
file left. The OSError is injected where the operating system would raise it."""

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import soundfile as sf
from typer.testing import CliRunner

from jen1cli.cli import app

runner = CliRunner()
REASON = {
    errno.ENOSPC: "No space left on device",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
}


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _inject(monkeypatch, code: int, seam: str) -> list[str]:
    """Make the OS refuse with ``code`` at ``seam``; returns a log of the refusals."""
    refused: list[str] = []

    def refuse(what: str):
        refused.append(what)
        raise _os_error(code)

    if seam == "create":  # the temp file cannot even be created
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: refuse("mkstemp"))
    elif seam == "write":  # write() fails half-way through the audio: libsndfile's system error
        real_write = sf.SoundFile.write

        def write(self, data):
            real_write(self, data[: len(data) // 2])
            refused.append("write")
            raise sf.LibsndfileError(2)

        monkeypatch.setattr(sf.SoundFile, "write", write)
    elif seam == "fsync":  # delayed allocation: the file system reports the full disk at fsync
        monkeypatch.setattr(os, "fsync", lambda fd: refuse("fsync"))
    elif seam == "sidecar":  # the audio fitted, its sidecar does not
        real_write_text = Path.write_text

        def write_text(self, *args, **kwargs):
            if self.suffix == ".json":
                refuse("sidecar")
            return real_write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    elif seam == "rename":
        monkeypatch.setattr(os, "replace", lambda *a, **k: refuse("rename"))
    return refused


CASES = [
    (errno.ENOSPC, "write"),
    (errno.ENOSPC, "fsync"),
    (errno.ENOSPC, "sidecar"),
    (errno.EROFS, "create"),
    (errno.EROFS, "rename"),
    (errno.EACCES, "create"),
    (errno.EACCES, "rename"),
]


@pytest.mark.parametrize(
    ("code", "seam"), CASES, ids=[f"{errno.errorcode[c]}-{s}" for c, s in CASES]
)
def test_output_error_keeps_the_previous_file_and_sidecar(
    tiny_model_dir, tmp_path, monkeypatch, code, seam
):
    out = tmp_path / "out.wav"
    out.write_bytes(b"the previous take")
    sidecar = tmp_path / "out.wav.json"
    sidecar.write_text('{"seed": 1}')
    refused = _inject(monkeypatch, code, seam)
    args = ["generate", "x", "-d", "0.3", "--steps", "1", "-o", str(out), "--overwrite"]
    args += ["--model", str(tiny_model_dir), "--device", "cpu", "--quiet"]
    result = runner.invoke(app, args)
    assert refused, "the error was never injected"
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jen1: error: cannot write"), lines
    reason = "the disk may be full" if seam == "write" else REASON[code]
    fix = "pick a folder you can write to" if seam == "create" else "check space and permissions"
    assert reason in lines[0] and fix in lines[0]
    assert out.read_bytes() == b"the previous take"
    assert sidecar.read_text() == '{"seed": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "out.wav.json"]
    assert result.stdout == ""  # no path is printed for a file that was not written


def test_encode_on_a_full_disk_keeps_the_previous_latents(tiny_model_dir, tmp_path, monkeypatch):
    song = tmp_path / "s.wav"
    sf.write(song, np.zeros((4800, 2), np.float32) + 0.1, 48_000)
    out = tmp_path / "s.latent.safetensors"
    out.write_bytes(b"old latents")

    def full(*args, **kwargs):
        raise safetensors.SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    args = ["encode", str(song), "-o", str(out), "--overwrite", "--model", str(tiny_model_dir)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert out.read_bytes() == b"old latents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.latent.safetensors", "s.wav"]
