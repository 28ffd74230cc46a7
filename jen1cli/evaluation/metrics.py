"""`jen1 eval`'s work: FAD, KL and CLAP score of a folder of generated audio against references.

- **FAD**: Fréchet distance between Gaussians fitted to the embeddings of all generated and all
  reference audio (CLAP: one per 10 s window; EnCodec: one per latent frame).
- **KL**: for each generated file with a reference of the same name (stem), KL(p_ref ‖ p_gen) of
  the AudioSet label distributions, averaged over the pairs (the paper's protocol pairs each
  generation with the recording its caption describes).
- **CLAP score**: cosine similarity of each generated file's CLAP audio embedding with its
  prompt's text embedding, averaged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from jen1cli.audio import load_audio
from jen1cli.evaluation import models
from jen1cli.evaluation.frechet import frechet_distance_of
from jen1cli.progress import ProgressCallback, no_progress

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus"}
METRICS = ("fad", "kl", "clap")


class EvaluationError(ValueError):
    """The folders or prompts cannot be evaluated as asked (reported as bad input)."""


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = METRICS
    embedding: str = "clap"  # FAD embedding: clap or encodec
    clap_model: str = models.DEFAULT_CLAP
    encodec_model: str = models.DEFAULT_ENCODEC
    classifier_model: str = models.DEFAULT_CLASSIFIER
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)


def list_audio(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted; refuses a folder without any."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder: give a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise EvaluationError(
            f"{folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    return files


def read_prompts(files: list[Path], prompts_file: Path | None) -> dict[Path, str]:
    """Each generated file's prompt: from ``prompts_file`` (JSON lines with ``file_name`` and
    ``text``), else from the ``<file>.json`` sidecar that `jen1 generate` writes, else from a
    ``metadata.jsonl`` beside the files."""
    found: dict[Path, str] = {}
    if prompts_file is not None:
        by_name = {}
        for n, line in enumerate(prompts_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                by_name[Path(row["file_name"]).name] = str(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise EvaluationError(
                    f"{prompts_file} line {n} is not a JSON object with file_name and text"
                ) from err
        return {f: by_name[f.name] for f in files if f.name in by_name}
    for f in files:
        sidecar = f.with_suffix(f.suffix + ".json")
        if sidecar.is_file():
            prompt = json.loads(sidecar.read_text()).get("prompt")
            if isinstance(prompt, str):
                found[f] = prompt
    for meta in {f.parent / "metadata.jsonl" for f in files if f not in found}:
        if meta.is_file():
            rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
            texts = {r.get("file_name"): r.get("text") for r in rows}
            for f in files:
                if f.parent == meta.parent and f not in found and texts.get(f.name):
                    found[f] = str(texts[f.name])
    return found


def _embed_all(embedder, files: list[Path], stage: str, progress: ProgressCallback) -> Tensor:
    channels = getattr(embedder, "channels", 1)
    out = []
    for i, path in enumerate(files):
        audio, _ = load_audio(path, embedder.sample_rate, channels)
        out.append(embedder.embed_audio(audio))
        progress(stage, i + 1, len(files))
    return torch.cat(out)


def kl_divergence(p_ref: Tensor, p_gen: Tensor, eps: float = 1e-8) -> float:
    """KL(p_ref ‖ p_gen) in nats; ``eps`` keeps a zero probability from making it infinite."""
    p, q = p_ref.double() + eps, p_gen.double() + eps
    p, q = p / p.sum(), q / q.sum()
    return float((p * (p.log() - q.log())).sum())


def evaluate(
    generated_dir: Path,
    reference_dir: Path,
    prompts_file: Path | None = None,
    options: EvalOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> dict:
    """Compute the asked metrics; returns the report (also what `jen1 eval` writes as JSON)."""
    options = options or EvalOptions()
    unknown = set(options.metrics) - set(METRICS)
    if unknown:
        raise EvaluationError(
            f"unknown metric(s) {', '.join(sorted(unknown))}: choose fad, kl, clap"
        )
    if options.embedding not in models.EMBEDDINGS:
        hint = " (VGGish ships only as pickled weights, which jen1 never loads)"
        raise EvaluationError(
            f"unknown --embedding '{options.embedding}': choose clap or encodec"
            + (hint if options.embedding.lower() == "vggish" else "")
        )
    generated, reference = list_audio(generated_dir), list_audio(reference_dir)
    prompts = read_prompts(generated, prompts_file) if "clap" in options.metrics else {}
    if "clap" in options.metrics and not prompts:
        raise EvaluationError(
            "the CLAP score needs the prompts: pass --prompts prompts.jsonl (file_name, text), "
            "keep `jen1 generate`'s .json sidecars beside the audio, or leave clap out of --metrics"
        )
    ref_by_stem = {r.stem: r for r in reference}
    pairs = [(g, ref_by_stem[g.stem]) for g in generated if g.stem in ref_by_stem]
    if "kl" in options.metrics and not pairs:
        raise EvaluationError(
            "the KL pairs each generated file with the reference of the same name, and no names "
            "match: name them alike, or leave kl out of --metrics"
        )
    report: dict = {
        "generated": str(generated_dir),
        "reference": str(reference_dir),
        "files": {"generated": len(generated), "reference": len(reference)},
    }
    clap = None
    if "clap" in options.metrics or ("fad" in options.metrics and options.embedding == "clap"):
        clap = models.Clap.load(options.clap_model, options.device)
    if "fad" in options.metrics:
        embedder = (
            clap
            if options.embedding == "clap"
            else models.Encodec.load(options.encodec_model, options.device)
        )
        gen = _embed_all(embedder, generated, "embed generated", progress)
        ref = _embed_all(embedder, reference, "embed reference", progress)
        report["fad"] = {
            "value": frechet_distance_of(gen, ref),
            "embedding": options.embedding,
            "model": embedder.name,
            "embeddings": {"generated": len(gen), "reference": len(ref)},
        }
    if "kl" in options.metrics:
        classifier = models.AudioSetClassifier.load(options.classifier_model, options.device)
        values = []
        for i, (g, r) in enumerate(pairs):
            dists = [
                classifier.label_distribution(load_audio(p, classifier.sample_rate, 1)[0])
                for p in (r, g)
            ]
            values.append(kl_divergence(*dists))
            progress("classify", i + 1, len(pairs))
        report["kl"] = {
            "value": sum(values) / len(values),
            "model": classifier.name,
            "pairs": len(values),
            "per_file": {g.name: v for (g, _), v in zip(pairs, values, strict=True)},
        }
    if "clap" in options.metrics:
        files = [f for f in generated if f in prompts]
        scores = []
        for i, f in enumerate(files):
            audio = torch.nn.functional.normalize(
                clap.embed_audio(load_audio(f, clap.sample_rate, 1)[0]).mean(0), dim=-1
            )
            scores.append(float(audio @ clap.embed_text([prompts[f]])[0]))
            progress("clap score", i + 1, len(files))
        report["clap_score"] = {
            "value": sum(scores) / len(scores),
            "model": clap.name,
            "files": len(scores),
            "per_file": {f.name: s for f, s in zip(files, scores, strict=True)},
        }
        if len(files) < len(generated):
            options.notes.append(f"{len(generated) - len(files)} generated file(s) had no prompt")
    report["notes"] = list(options.notes)
    return report
