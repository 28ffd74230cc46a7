"""examples/benchmark_speed.py: the speed benchmark runs end to end on tiny configs."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from jen1cli.presets import full_config

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "benchmark_speed.py"
PEERS = ("musicgen-small", "musicgen-medium", "stable-audio-open")
STAGES = ("text_encoding", "denoising", "decoding")


@pytest.fixture(scope="module")
def bench():
    """The script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmark_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_tiny_run_reports_every_model_and_a_ratio_per_peer(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--seconds", "1", "--out", str(out)])

    report = json.loads(out.read_text())
    assert set(report["models"]) == {"jen1", *PEERS}
    for name, model in report["models"].items():
        for key in STAGES:
            stage = model["stages"][key]
            assert _positive(stage["seconds"]), (name, key, stage)
            assert _positive(stage["per_audio_second"]), (name, key, stage)
        assert _positive(model["params"]["total"])
        assert model["memory"]
    # CPU defaults time a few steps and scale them: the diffusion stages say so.
    assert report["models"]["jen1"]["stages"]["denoising"]["extrapolated"]
    assert report["models"]["stable-audio-open"]["stages"]["denoising"]["extrapolated"]
    for peer in PEERS:
        assert _positive(report["headline"][peer]["ours_over_peer"])
    limit = report["physical_limit"]
    assert _positive(limit["generation_flops"])
    assert 0 < limit["fraction_of_matmul_peak"] < 10  # tiny models reach little of the peak
    assert report["machine"]["versions"]["torch"]
    assert report["settings"]["tiny"] and report["settings"]["seconds"] == 1.0
    printed = capsys.readouterr().out
    assert "ours/peer" in printed and "physical limit" in printed


@pytest.mark.slow
def test_every_step_run_is_not_extrapolated(bench, tmp_path):
    """Timing at least every step and token (what a GPU run does) measures the real generation."""
    out = tmp_path / "full.json"
    bench.main(
        [
            "--tiny",
            "--seconds",
            "0.2",
            "--steps-timed",
            "1000",
            "--tokens-timed",
            "1000",
            "--only",
            "jen1,musicgen-small",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    for model in report["models"].values():
        assert not any(s["extrapolated"] for s in model["stages"].values())
    steps = full_config().diffusion.num_inference_steps  # the full model's sampling, every step
    assert report["models"]["jen1"]["stages"]["denoising"]["measured_units"] == steps
    assert report["models"]["musicgen-small"]["stages"]["denoising"]["total_units"] == 13  # 10 + 3
    assert _positive(report["headline"]["musicgen-small"]["ours_over_peer"])


def test_token_cost_integration_is_exact_for_a_linear_cost(bench):
    positions, costs = [0.0, 50.0, 99.0], [1.0, 1.5, 1.99]  # cost = 1 + p / 100
    assert bench._integrate(positions, costs, 100) == pytest.approx(
        sum(1 + p / 100 for p in range(100))
    )


def test_windows_follow_the_pipeline_rollout(bench):
    # 10 s = one bidirectional window; 20 s = that window + two causal windows of 5 s new audio.
    assert bench.jen1_windows(1500, 1500) == [(1500, 0, False)]
    assert bench.jen1_windows(3000, 1500) == [
        (1500, 0, False),
        (1500, 750, True),
        (1500, 750, True),
    ]
    # A short tail is generated with as much known context as fits in the window.
    assert bench.jen1_windows(1600, 1500) == [(1500, 0, False), (1500, 1400, True)]


def test_merge_refuses_other_settings_and_copies_skipped_models(bench, tmp_path):
    machine = {"cpu": "X", "gpu": None}
    settings = {"seconds": 10.0, "device": "cpu", "dtype": "float32", "tiny": False}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps({"machine": machine, "settings": settings, "models": {"jen1": {"a": 1}}})
    )
    report = {"machine": dict(machine), "settings": dict(settings), "models": {}}
    bench.merge_earlier(report, earlier, ["stable-audio-open"])
    assert report["models"]["jen1"] == {"a": 1, "merged_from": str(earlier)}

    other = {"machine": dict(machine), "settings": {**settings, "seconds": 5.0}, "models": {}}
    with pytest.raises(SystemExit, match="seconds"):
        bench.merge_earlier(other, earlier, [])


def test_a_failing_model_is_reported_and_the_others_still_run(bench, tmp_path, monkeypatch):
    """One peer that breaks (a library version, out of memory) must not lose the other figures."""

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(bench, "bench_stable_audio", broken)
    out = tmp_path / "bench.json"
    only = "musicgen-small,stable-audio-open"
    bench.main(["--tiny", "--seconds", "1", "--only", only, "--out", str(out)])
    report = json.loads(out.read_text())
    models = report["models"]
    assert models["stable-audio-open"]["skipped"] == "failed: RuntimeError: CUDA out of memory"
    assert report["failed"] == ["stable-audio-open"]
    assert _positive(models["musicgen-small"]["stages"]["decoding"]["seconds"])
    # when nothing at all could be measured, the run says so with its exit status
    with pytest.raises(SystemExit, match="every model failed: stable-audio-open"):
        bench.main(["--tiny", "--only", "stable-audio-open", "--out", str(tmp_path / "b.json")])
