"""examples/benchmark_training.py: the training-throughput benchmark runs on the tiny config."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "benchmark_training.py"
FIGURES = ("steps_per_second", "samples_per_second", "audio_seconds_per_second")


@pytest.fixture(scope="module")
def bench():
    """The script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmark_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_tiny_run_prints_one_row_per_configuration(bench, tmp_path, capsys):
    out = tmp_path / "train.json"
    argv = ["--config", "tiny", "--crop", "0.2,0.4", "--batch", "2", "--dtype", "fp32,bf16"]
    report = bench.main(
        [*argv, "--steps", "2", "--warmup", "0", "--threads", "1", "--out", str(out)]
    )

    rows = report["rows"]
    assert [(r["crop"], r["dtype"]) for r in rows] == [
        (0.2, "fp32"),
        (0.2, "bf16"),
        (0.4, "fp32"),
        (0.4, "bf16"),
    ]
    for row in rows:
        for key in FIGURES:
            assert _positive(row[key]), (key, row)
        assert row["audio_seconds_per_second"] == pytest.approx(
            row["samples_per_second"] * row["crop"]
        )
        assert row["batch"] == 2 and row["threads"] == 1 and row["steps_timed"] == 2
        assert row["frames"] == round(row["crop"] * 150)  # the tiny codec: 150 frames/s
        assert sum(row["phase_share"].values()) == pytest.approx(1.0)
        assert _positive(row["ratio_vs_baseline"])
        assert "profile" not in row
    assert rows[0]["ratio_vs_baseline"] == 1.0
    assert _positive(report["unet"]["parameters"])
    assert json.loads(out.read_text())["rows"][3]["dtype"] == "bf16"

    printed = capsys.readouterr().out
    table = printed.split(bench.HEADER, 1)[1].strip().split("\n\n")[0].splitlines()
    assert len(table) == len(rows)  # one printed row per configuration
    assert table[0].split()[:4] == ["0.2", "2", "1", "fp32"]
    assert "no text encoder in the step" in printed


def test_profile_names_the_top_ops_and_the_shares(bench, capsys):
    argv = ["--config", "tiny", "--crop", "0.2", "--batch", "2", "--threads", "1"]
    report = bench.main([*argv, "--steps", "1", "--warmup", "0", "--profile"])

    (row,) = report["rows"]
    prof = row["profile"]
    assert 0 < len(prof["top_ops"]) <= bench.TOP_OPS
    assert all(op["self_cpu_seconds"] >= 0 for op in prof["top_ops"])
    assert prof["categories"]["conv"] > 0 and prof["categories"]["attention (sdpa)"] > 0
    assert sum(prof["categories"].values()) == pytest.approx(1.0)
    assert set(prof["phases"]) == set(bench.PHASES)
    assert prof["phases"]["optimizer"] > 0
    printed = capsys.readouterr().out
    assert "profile of one step" in printed and "by op (self CPU time): conv" in printed


def test_op_categories(bench):
    assert bench.op_category("aten::convolution_backward") == "conv"
    assert bench.op_category("autograd::engine::evaluate_function: ConvolutionBackward0") == "conv"
    assert (
        bench.op_category("aten::_scaled_dot_product_flash_attention_for_cpu_backward")
        == "attention (sdpa)"
    )
    assert bench.op_category("aten::native_group_norm_backward") == "group norm"
    assert bench.op_category("aten::silu") is None


def test_model_folder_config_and_bad_options(bench, tmp_path):
    from jen1cli.testing import tiny_config

    tiny_config().save(tmp_path / "config.json")  # all --model reads of a model folder
    assert bench.load_config(model=str(tmp_path)).name == "jen1-tiny"
    assert bench.load_config(str(tmp_path / "config.json")).unet.latent_channels == 6
    with pytest.raises(SystemExit):
        bench.parse_args(["--dtype", "fp16"])
    with pytest.raises(SystemExit):
        bench.load_config("no-such-preset")
