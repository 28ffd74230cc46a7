"""examples/eval_text_following.py: the mode and drums metrics, the drums detector, snapshots."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import music_analysis as ma  # noqa: E402
import text_following_scoring as tfs  # noqa: E402

SR = 22_050


def _row(text: str, key: str = "D minor", bpm: int = 90, drums: bool | None = True) -> dict:
    tonic, mode = key.split()
    row = {"text": text, "bpm": bpm, "tonic": tonic, "mode": mode, "file_name": "x.wav"}
    return row if drums is None else row | {"drums": drums}


def test_which_captions_state_the_mode():
    assert tfs.states_mode("a sad ballad in D minor at 72 BPM", "minor")
    assert tfs.states_mode("rock, C sharp major key, 140 bpm", "major")
    assert tfs.states_mode("Minor key, slow", "minor")
    assert not tfs.states_mode("rock, C sharp major key", "minor")  # says the other mode
    assert not tfs.states_mode("a calm ambient piece at 70 BPM", "minor")  # says none
    assert not tfs.states_mode("from A minor to C major", "minor")  # says both: neither
    states = tfs.prompt_states(_row("Key: B flat minor. Tempo: 90 BPM. Jazz.", key="Bb minor"))
    assert states["key"] and states["mode"] and states["tempo"]


def test_which_captions_state_the_drums():
    assert tfs.caption_drums("rock with distorted guitar, electric bass and drums") is True
    assert tfs.caption_drums("an ambient piece, no drums") is False
    assert tfs.caption_drums("orchestral, without drums") is False
    assert tfs.caption_drums("calm, no percussion, 70 bpm") is False
    assert tfs.caption_drums("a mellow piano ballad in D minor") is None
    # stated only where the caption agrees with the label; drums_all wherever there is a label
    said = tfs.prompt_states(_row("pop with piano and drums", drums=True))
    assert said["drums"] and said["drums_all"]
    silent = tfs.prompt_states(_row("a pop song", drums=True))
    assert not silent["drums"] and silent["drums_all"]
    unlabelled = tfs.prompt_states(_row("pop with drums", drums=None))
    assert not unlabelled["drums"] and not unlabelled["drums_all"]


def test_mode_and_drums_scores_and_the_shuffled_baseline():
    rows = [
        _row("pop in C major with drums", key="C major", drums=True),
        _row("ambient in A minor, no drums", key="A minor", drums=False),
        _row("folk, E minor, with banjo and drums", key="E minor", drums=True),
        _row("orchestral piece", key="F major", drums=False),  # states neither mode nor drums
    ]
    stated = [tfs.prompt_states(r) for r in rows]
    assert [s["mode"] for s in stated] == [True, True, True, False]
    assert [s["drums"] for s in stated] == [True, True, True, False]
    # perfect estimates, but for the key of row 1: relative (C major) — right key, wrong mode
    estimates = [
        {"tempo": 90.0, "key": f"{r['tonic']} {r['mode']}", "drums": r["drums"]} for r in rows
    ]
    estimates[1]["key"] = "C major"
    assert tfs.compare(estimates[1], rows[1])["key_match"] == "relative"
    assert not tfs.compare(estimates[1], rows[1])["mode_match"]
    totals = tfs.score_generated(estimates, rows, stated, [1, 0, 3, 2])
    assert totals["matched"]["mode"] == {"hits": 2, "n": 3, "rate": 2 / 3}
    assert totals["matched"]["drums"] == {"hits": 3, "n": 3, "rate": 1.0}
    assert totals["matched"]["drums_all"]["n"] == 4
    assert totals["matched"]["key_relative"]["rate"] == 1.0
    # shuffled: clip i against row perm[i]; only rows 0-2 state drums, and 0 <-> 1 disagree
    assert totals["shuffled"]["drums"] == {"hits": 0, "n": 3, "rate": 0.0}
    assert totals["all_pairs"]["drums_all"]["n"] == 12  # every (i, j != i) pair
    text = tfs.table(totals | {"via_autoencoder": totals["matched"], "ceiling": totals["matched"]})
    assert "mode (major/minor)" in text and "67% (2/3)" in text
    curve = [{"step": 500, "samples_seen": 8000, "totals": totals}]
    md = tfs.curve_table(curve, final=totals).splitlines()
    assert md[0].startswith("| step | samples seen | tempo within 8 %")
    assert md[2].startswith("| 500 | 8,000 |") and "| 67% / " in md[2]
    assert md[3].startswith("| model |")


def _clicks(seconds: float = 4.0, bpm: float = 120.0) -> np.ndarray:
    """A hi-hat-like click track: 30 ms decaying white-noise bursts on every beat."""
    rng = np.random.default_rng(0)
    y = np.zeros(round(seconds * SR), dtype=np.float32)
    burst = round(0.03 * SR)
    envelope = np.exp(-np.arange(burst) / (0.005 * SR))
    for start in np.arange(0, seconds, 60 / bpm):
        i = round(start * SR)
        y[i : i + burst] += 0.5 * envelope[: len(y) - i] * rng.standard_normal(burst)[: len(y) - i]
    return y


def _chord(seconds: float = 4.0) -> np.ndarray:
    """A sustained C major triad of sines."""
    t = np.arange(round(seconds * SR)) / SR
    return sum(0.2 * np.sin(2 * math.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(
        np.float32
    )


def test_drums_detector_hears_clicks_not_a_sine_chord():
    chord, clicks = _chord(), _clicks()
    assert not ma.detect_drums(chord, SR)
    assert ma.detect_drums(clicks, SR)
    assert ma.detect_drums(np.stack([chord + clicks] * 2), SR)  # a kit under a chord, stereo
    assert ma.percussive_high_db(np.zeros(SR, dtype=np.float32), SR) == -200.0  # silence
    assert not ma.detect_drums(np.zeros(SR, dtype=np.float32), SR)


def test_snapshots_are_found_in_step_order(tmp_path):
    import eval_text_following as etf
    import torch
    from safetensors.torch import save_file

    weights = {"w": torch.zeros(2)}
    save_file(weights, tmp_path / "diffusion-step0000200.safetensors", metadata={"step": "200"})
    save_file(weights, tmp_path / "diffusion-step0000050.safetensors", metadata={"step": "50"})
    save_file(weights, tmp_path / "diffusion-step0001000.safetensors")  # no metadata: the name
    found = etf.find_snapshots(str(tmp_path / "diffusion-step*.safetensors"))
    assert [step for step, _ in found] == [50, 200, 1000]
    with pytest.raises(SystemExit):
        etf.find_snapshots(str(tmp_path / "nothing-*.safetensors"))
    args = etf.parse_args(["--model", "m", "--heldout", "h", "--snapshots", "s*"])
    assert args.train_batch == 16
