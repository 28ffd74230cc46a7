"""examples/eval_reconstruction.py: the frame-rate buzz measure."""

import importlib.util
import math
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "eval_reconstruction.py"
SR = 48_000


def _script():
    spec = importlib.util.spec_from_file_location("eval_reconstruction", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tones(freqs: list[float], seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = sum(torch.sin(2 * math.pi * f * t) for f in freqs)
    return torch.stack([wave, wave]).float()  # [2, N]


def test_buzz_is_the_share_of_energy_on_frame_rate_harmonics():
    buzz = _script().frame_rate_buzz
    assert buzz(_tones([100.0, 150.0, 400.0]), SR, 50.0) > 0.99  # all on multiples of 50 Hz
    assert buzz(_tones([261.63, 329.63, 440.0]), SR, 50.0) < 0.01  # a C major chord: none
    half = buzz(_tones([300.0, 261.63]), SR, 50.0)  # one tone on, one off, equal energy
    assert 0.45 < half < 0.55
    assert math.isnan(buzz(torch.zeros(2, SR), SR, 50.0))  # silence has no share to give
