"""What wraps every command (jen1cli/commands/session.py): notes and warnings are printed only
when the command succeeds, as `jen1: note:` lines, so a failure is exactly one line."""

from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from jen1cli.cli import app

runner = CliRunner()
SR = 48_000


def _run(tiny_model_dir, *args):
    return runner.invoke(app, [*args, "--model", str(tiny_model_dir), "--device", "cpu", "-q"])


def _song(path: Path) -> Path:
    sf.write(path, 0.1 * np.ones((SR, 1), np.float32), 44_100)  # mono 44.1 kHz: two notes
    return path


def test_a_failing_command_prints_only_its_error(tiny_model_dir, tmp_path):
    song = _song(tmp_path / "s.wav")
    args = ["inpaint", str(song), "--mask", "0.1-0.3", "--mask", "0.2-0.4", "--steps", "1"]
    result = _run(tiny_model_dir, *args, "-o", str(tmp_path / "nowhere" / "o.wav"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"jen1: error: output folder {tmp_path / 'nowhere'} does not exist: create it first"
    ]


def test_a_succeeding_command_prints_its_notes(tiny_model_dir, tmp_path):
    song = _song(tmp_path / "s.wav")
    args = ["inpaint", str(song), "--mask", "0.1-0.3", "--mask", "0.2-0.4", "--steps", "1"]
    result = _run(tiny_model_dir, *args, "-o", str(tmp_path / "o.wav"))
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "jen1: note: overlapping --mask spans merged into 0.1-0.4"
    assert lines[1].startswith("jen1: note: s.wav: resampled 44100 Hz to 48000 Hz")


def test_a_python_warning_becomes_one_note_line(tiny_model_dir, tmp_path):
    """0 LUFS under a -1 dBFS true-peak ceiling is out of reach: loudness_normalize warns."""
    out = tmp_path / "g.wav"
    result = _run(
        tiny_model_dir, "generate", "x", "-d", "0.5", "--steps", "1", "--lufs", "0", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jen1: note: loudness is"), lines
    assert "Warning" not in result.stderr
