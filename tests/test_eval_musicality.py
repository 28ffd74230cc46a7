"""examples/eval_musicality.py: a tiny run writes the JSON figures and the --figure PNG."""

import importlib.util
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMPTS = ("ambient synth pad", "a mellow piano ballad")


def _script():
    sys.path.insert(0, str(EXAMPLES))  # the script imports its neighbours
    spec = importlib.util.spec_from_file_location(
        "eval_musicality", EXAMPLES / "eval_musicality.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_flatness_comb_and_a_spectrogram_png(tiny_model_dir, tmp_path, monkeypatch):
    import soundfile as sf

    script = _script()
    figures = []  # the figure main() saves, to count its spectrogram panels
    build = script.spectrogram_figure
    monkeypatch.setattr(
        script, "spectrogram_figure", lambda *a: figures.append(build(*a)) or figures[-1]
    )
    ref = tmp_path / "ref"
    ref.mkdir()
    t = np.arange(48_000) / 48_000
    sf.write(ref / "a.flac", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3, 48_000)
    out, png = tmp_path / "musicality.json", tmp_path / "figs" / "musicality.png"
    argv = ["--model", str(tiny_model_dir), "--seconds", "1", "--seeds", "1", "--out", str(out)]
    argv += [a for p in PROMPTS for a in ("--prompt", p)]
    script.main([*argv, "--reference", str(ref), "--figure", str(png)])

    report = json.loads(out.read_text())
    assert [r["prompt"] for r in report["rows"]] == list(PROMPTS)
    for part in ("generated", "reference"):
        assert math.isfinite(report["summary"][part]["median_flatness"])
        assert 0 <= report["summary"][part]["mean_comb"] <= 1
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 300 and len(data) > 10_000
    assert [p.name for p in png.parent.iterdir()] == [png.name]  # the temporary file is gone
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.images]  # the colour bar has no title
    assert len(titles) == 3  # one per prompt, then the reference
    assert all(f"'{p}'" in t for p, t in zip(PROMPTS, titles, strict=False))
    assert "reference a.flac" in titles[2] and all("flatness" in t for t in titles)
