"""`jen1 eval`: the Fréchet distance against closed forms, and the command on tiny random models."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from jen1cli.cli import app
from jen1cli.evaluation.frechet import frechet_distance, frechet_distance_of, gaussian_stats
from jen1cli.evaluation.metrics import kl_divergence
from jen1cli.testing import tiny_encodec_config

runner = CliRunner()


# --- the Fréchet distance -------------------------------------------------------------------------
def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def test_frechet_distance_of_commuting_gaussians_has_its_closed_form():
    """Σ₁ = R diag(a) Rᵀ, Σ₂ = R diag(b) Rᵀ: FD = ‖μ₁ − μ₂‖² + Σ (√a − √b)²."""
    d = 6
    r = _rotation(d, 0)
    a = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1, 4.0], dtype=torch.float64)
    b = torch.tensor([1.5, 0.2, 2.0, 1.0, 0.4, 9.0], dtype=torch.float64)
    mu1 = torch.arange(d, dtype=torch.float64)
    mu2 = mu1 + torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 1.0], dtype=torch.float64)
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(mu1, r @ torch.diag(a) @ r.T, mu2, r @ torch.diag(b) @ r.T)
    assert math.isclose(got, expected, rel_tol=1e-9), (got, expected)


def test_frechet_distance_matches_scipy_sqrtm_on_general_covariances():
    from scipy import linalg

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = x @ x.T + 0.1 * np.eye(8), y @ y.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    got = frechet_distance(*(torch.from_numpy(t) for t in (mu1, s1, mu2, s2)))
    assert math.isclose(got, reference, rel_tol=1e-7), (got, reference)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance_of(x, x) < 1e-9
    assert math.isclose(frechet_distance_of(x, x + 2.0), 4 * 4.0, rel_tol=1e-6)


def test_gaussian_stats_recover_the_sampling_gaussian():
    r = _rotation(3, 1)
    cov = r @ torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)) @ r.T
    x = torch.distributions.MultivariateNormal(torch.ones(3, dtype=torch.float64), cov).sample(
        (20_000,)
    )
    mu, sigma = gaussian_stats(x)
    assert torch.allclose(mu, torch.ones(3, dtype=torch.float64), atol=0.05)
    assert torch.allclose(sigma, cov, atol=0.06)


def test_kl_divergence_is_zero_for_equal_distributions_and_positive_otherwise():
    p = torch.tensor([0.7, 0.2, 0.1])
    assert abs(kl_divergence(p, p)) < 1e-12
    q = torch.tensor([0.1, 0.2, 0.7])
    expected = float((p * (p / q).log()).sum())
    assert math.isclose(kl_divergence(p, q), expected, rel_tol=1e-5)


# --- the command on tiny random models ---------------------------------------------------------
def _tiny_clap(enable_fusion: bool = False):
    """A random CLAP a few kilobytes large (HTSAT audio tower, RoBERTa text tower)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    audio = ClapAudioConfig(
        depths=[1, 1],
        num_attention_heads=[2, 2],
        patch_embeds_hidden_size=16,
        hidden_size=32,
        projection_dim=16,
        enable_fusion=enable_fusion,
    )
    text = ClapTextConfig(
        vocab_size=400,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        projection_dim=16,
    )
    return ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict())).eval()


@pytest.fixture(scope="module")
def tiny_eval_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random CLAP, AST and EnCodec folders, saved like Hub snapshots (offline)."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTForAudioClassification,
        ByT5Tokenizer,
        ClapFeatureExtractor,
        EncodecModel,
    )

    root = tmp_path_factory.mktemp("eval-models")
    torch.manual_seed(0)
    clap = _tiny_clap()
    clap.save_pretrained(root / "clap")
    ClapFeatureExtractor().save_pretrained(root / "clap")
    ByT5Tokenizer().save_pretrained(root / "clap")
    ast = ASTForAudioClassification(
        ASTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=527,
        )
    )
    ast.save_pretrained(root / "ast")
    ASTFeatureExtractor().save_pretrained(root / "ast")
    encodec = EncodecModel(tiny_encodec_config(norm_type="weight_norm"))
    encodec.save_pretrained(root / "encodec")
    return {"clap": root / "clap", "ast": root / "ast", "encodec": root / "encodec"}


def _write_clips(folder: Path, freqs: list[float], sidecars: bool = False, sr: int = 48_000):
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(1.5 * sr)) / sr
    for i, f in enumerate(freqs):
        wave = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * np.sin(2 * np.pi * 3 * f * t)
        sf.write(folder / f"clip{i}.wav", np.stack([wave, wave], 1).astype(np.float32), sr)
        if sidecars:
            (folder / f"clip{i}.wav.json").write_text(json.dumps({"prompt": f"a tone at {f} Hz"}))
    return folder


def _model_options(models: dict[str, Path]) -> list[str]:
    return [
        "--clap-model",
        str(models["clap"]),
        "--encodec-model",
        str(models["encodec"]),
        "--classifier",
        str(models["ast"]),
        "--device",
        "cpu",
        "--quiet",
    ]


def test_eval_writes_every_metric_and_scores_identical_sets_as_identical(
    tmp_path, tiny_eval_models
):
    generated = _write_clips(tmp_path / "gen", [220, 330, 440, 550], sidecars=True)
    same = _write_clips(tmp_path / "same", [220, 330, 440, 550])
    other = _write_clips(tmp_path / "other", [1000, 1500, 2500, 4000])
    reports = {}
    for name, reference in (("same", same), ("other", other)):
        out = tmp_path / f"{name}.json"
        args = ["eval", str(generated), str(reference), "-o", str(out)]
        result = runner.invoke(app, args + _model_options(tiny_eval_models))
        assert result.exit_code == 0, result.output
        assert str(out) in result.output and "FAD (clap" in result.output
        reports[name] = json.loads(out.read_text())
    same_report, other_report = reports["same"], reports["other"]
    assert same_report["fad"]["value"] < 1e-6  # identical audio, identical embeddings
    assert other_report["fad"]["value"] > 1e-4
    assert same_report["kl"]["pairs"] == 4 and same_report["kl"]["value"] < 1e-6
    assert other_report["kl"]["value"] > 0
    clap = same_report["clap_score"]
    assert clap["files"] == 4 and -1.0 <= clap["value"] <= 1.0
    assert same_report["fad"]["embeddings"] == {"generated": 4, "reference": 4}


def test_eval_fad_with_encodec_embeddings_counts_frames(tmp_path, tiny_eval_models):
    generated = _write_clips(tmp_path / "gen", [220, 330])
    reference = _write_clips(tmp_path / "ref", [440, 880, 990])
    out = tmp_path / "e.json"
    args = ["eval", str(generated), str(reference), "--metrics", "fad", "--embedding", "encodec"]
    result = runner.invoke(app, args + ["-o", str(out)] + _model_options(tiny_eval_models))
    assert result.exit_code == 0, result.output
    fad = json.loads(out.read_text())["fad"]
    # 1.5 s at 48 kHz through hop 320 (8·8·5) is 225 frames per file
    assert fad["embeddings"] == {"generated": 450, "reference": 675}
    assert fad["value"] > 0 and math.isfinite(fad["value"])


def test_eval_prompts_file_overrides_sidecars(tmp_path, tiny_eval_models):
    generated = _write_clips(tmp_path / "gen", [220, 330])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"file_name": "clip1.wav", "text": "a flute"}) + "\n")
    out = tmp_path / "e.json"
    args = ["eval", str(generated), str(generated), "--metrics", "clap", "--prompts", str(prompts)]
    result = runner.invoke(app, args + ["-o", str(out)] + _model_options(tiny_eval_models))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert list(report["clap_score"]["per_file"]) == ["clip1"]
    assert "1 generated file(s) had no prompt" in report["notes"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing folder", "is not a folder"),
        ("no audio", "holds no audio files"),
        ("no prompts", "the CLAP score needs the prompts"),
        ("no pairs", "no names match"),
        ("vggish", "pickled weights"),
        ("bad metric", "unknown metric"),
        ("absent model", "download it once with network"),
        ("existing output", "already exists"),
        ("same folder", "same folder or one holds the other"),
        ("nested folder", "same folder or one holds the other"),
        ("bad sidecar", "is not a JSON sidecar"),
        ("bad metadata", "line 1 is not valid JSON"),
        ("latin-1 prompts", "is not UTF-8 text"),
        ("duplicate names", "share a name"),
        ("one embedding", "FAD needs at least 2 clap embeddings"),
        ("unknown option", "No such option: --bogus"),
    ],
)
def test_eval_bad_input_is_one_line_exit_2(tmp_path, tiny_eval_models, monkeypatch, case, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generated = _write_clips(tmp_path / "gen", [220, 330], sidecars=True)
    reference = _write_clips(tmp_path / "ref", [440, 550])
    out = tmp_path / "e.json"
    extra = _model_options(tiny_eval_models)
    args = ["eval", str(generated), str(reference), "-o", str(out)]
    if case == "missing folder":
        args[1] = str(tmp_path / "nope")
    elif case == "no audio":
        (tmp_path / "empty").mkdir()
        args[2] = str(tmp_path / "empty")
    elif case == "no prompts":
        args[1] = str(_write_clips(tmp_path / "unprompted", [220, 330]))
    elif case == "no pairs":
        args[2] = str(_write_clips(tmp_path / "renamed", [440]).rename(tmp_path / "renamed2"))
        (tmp_path / "renamed2" / "clip0.wav").rename(tmp_path / "renamed2" / "other.wav")
        args += ["--metrics", "kl"]
    elif case == "vggish":
        args += ["--embedding", "vggish"]
    elif case == "bad metric":
        args += ["--metrics", "fad,is"]
    elif case == "absent model":
        extra = extra[2:] + ["--clap-model", "nobody/no-such-clap"]
        args += ["--metrics", "clap"]
    elif case == "existing output":
        out.write_text("keep me")
    elif case == "same folder":
        args[2] = args[1]
    elif case == "nested folder":
        args[2] = str(_write_clips(generated / "refs", [440, 550]))
    elif case == "bad sidecar":
        (generated / "clip0.wav.json").write_text("{not json")
    elif case == "bad metadata":
        for sidecar in generated.glob("*.json"):
            sidecar.unlink()
        (generated / "metadata.jsonl").write_text("oops\n")
    elif case == "latin-1 prompts":
        prompts = tmp_path / "p.jsonl"
        prompts.write_bytes('{"file_name": "clip0.wav", "text": "caf\u00e9"}'.encode("latin-1"))
        args += ["--prompts", str(prompts)]
    elif case == "duplicate names":
        sf.write(reference / "clip0.flac", np.zeros((4800, 2), np.float32), 48_000)
    elif case == "one embedding":
        (generated / "clip1.wav").unlink()
        args += ["--metrics", "fad"]
    elif case == "unknown option":
        args += ["--bogus"]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "Traceback" not in result.output
    if case == "existing output":
        assert out.read_text() == "keep me"
    else:
        assert not out.exists()


def test_eval_pairs_files_by_their_path_in_the_folder(tmp_path, tiny_eval_models):
    """gen/a/clip0 pairs with ref/a/clip0 and gen/b/clip0 with ref/b/clip0 (not both with one)."""
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for sub, freq in (("a", 220), ("b", 660)):
        _write_clips(gen / sub, [freq])
        _write_clips(ref / sub, [freq])
    out = tmp_path / "e.json"
    args = ["eval", str(gen), str(ref), "--metrics", "kl", "-o", str(out)]
    result = runner.invoke(app, args + _model_options(tiny_eval_models))
    assert result.exit_code == 0, result.output
    kl = json.loads(out.read_text())["kl"]
    assert kl["pairs"] == 2 and sorted(kl["per_file"]) == ["a/clip0", "b/clip0"]
    assert max(kl["per_file"].values()) < 1e-6  # each file met its own twin


def test_kl_handles_a_clip_shorter_than_the_classifier_frame(tiny_eval_models):
    from jen1cli.evaluation.models import AudioSetClassifier

    classifier = AudioSetClassifier.load(str(tiny_eval_models["ast"]))
    dist = classifier.label_distribution(torch.randn(1, 5) * 0.1)
    assert dist.shape == (527,) and math.isclose(float(dist.sum()), 1.0, rel_tol=1e-5)


def test_fused_clap_embeddings_are_deterministic(tmp_path):
    """A fusion CLAP's extractor would flag a random window as "longer"; we never let it."""
    from transformers import ByT5Tokenizer, ClapFeatureExtractor

    from jen1cli.evaluation.models import Clap

    torch.manual_seed(0)
    model = _tiny_clap(enable_fusion=True)
    clap = Clap(model, ClapFeatureExtractor(), ByT5Tokenizer(), "tiny-fused")
    x = torch.randn(1, 25 * 48_000) * 0.1  # three windows: 10 + 10 + 5 s
    first = clap.embed_audio(x)
    for _ in range(3):
        assert torch.equal(clap.embed_audio(x), first)


def test_encodec_embeddings_follow_the_models_chunked_normalisation():
    """With normalize=True each 0.5 s chunk is divided by its RMS, as EnCodec encodes: a quieter
    copy of the audio embeds the same; chunking also makes the frame count add up per chunk."""
    from transformers import EncodecModel

    from jen1cli.evaluation.models import Encodec

    torch.manual_seed(0)
    model = EncodecModel(tiny_encodec_config(normalize=True, chunk_length_s=0.5)).eval()
    encodec = Encodec(model, "tiny")
    audio = torch.randn(2, 72_000) * 0.3  # 1.5 s: three chunks of 0.5 s = 75 frames each
    loud, quiet = encodec.embed_audio(audio), encodec.embed_audio(audio * 0.05)
    assert loud.shape == (225, 8)
    assert torch.allclose(loud, quiet, atol=1e-4)
