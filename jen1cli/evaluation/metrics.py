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
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from jen1cli.audio import load_audio
from jen1cli.evaluation import DEFAULT_CLAP, DEFAULT_CLASSIFIER, DEFAULT_ENCODEC, models
from jen1cli.evaluation.frechet import frechet_distance_of
from jen1cli.jsonl import read_json_lines
from jen1cli.progress import ProgressCallback, no_progress

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus"}
METRICS = ("fad", "kl", "clap")


class EvaluationError(ValueError):
    """The folders or prompts cannot be evaluated as asked (reported as bad input)."""


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = METRICS
    embedding: str = "clap"  # FAD embedding: clap or encodec
    clap_model: str = DEFAULT_CLAP
    encodec_model: str = DEFAULT_ENCODEC
    classifier_model: str = DEFAULT_CLASSIFIER
    device: str = "cpu"


def list_audio(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted; refuses a folder without any, and two
    files that differ only in their extension (they would claim the same name)."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder: give a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise EvaluationError(
            f"{folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    seen: dict[str, Path] = {}
    for f in files:
        key = clip_key(f, folder)
        if key in seen:
            raise EvaluationError(
                f"{seen[key].name} and {f.name} in {f.parent} share a name: keep one of them"
            )
        seen[key] = f
    return files


def clip_key(path: Path, folder: Path) -> str:
    """A clip's name within its folder: the relative path without the extension."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _sidecar_prompt(sidecar: Path) -> str | None:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EvaluationError(
            f"{sidecar} is not a JSON sidecar: fix or remove it, or pass --prompts"
        ) from err
    prompt = record.get("prompt") if isinstance(record, dict) else None
    return prompt if isinstance(prompt, str) else None


def read_prompts(files: list[Path], folder: Path, prompts_file: Path | None) -> dict[Path, str]:
    """Each generated file's prompt: from ``prompts_file`` (JSON lines with ``file_name``, the
    path relative to the folder, and ``text``), else from the ``<file>.json`` sidecar that
    `jen1 generate` writes, else from a ``metadata.jsonl`` beside the files."""
    if prompts_file is not None:
        by_name = {}
        for n, row in enumerate(read_json_lines(prompts_file, EvaluationError), 1):
            if "file_name" not in row or "text" not in row:
                raise EvaluationError(f"{prompts_file} row {n} lacks file_name or text")
            by_name[Path(str(row["file_name"])).as_posix()] = str(row["text"])
        names = {f: f.relative_to(folder).as_posix() for f in files}
        return {f: by_name[name] for f, name in names.items() if name in by_name}
    found: dict[Path, str] = {}
    for f in files:
        sidecar = f.with_suffix(f.suffix + ".json")
        if sidecar.is_file() and (prompt := _sidecar_prompt(sidecar)) is not None:
            found[f] = prompt
    for meta in {f.parent / "metadata.jsonl" for f in files if f not in found}:
        if meta.is_file():
            texts = {
                r.get("file_name"): r.get("text") for r in read_json_lines(meta, EvaluationError)
            }
            for f in files:
                if f.parent == meta.parent and f not in found and texts.get(f.name):
                    found[f] = str(texts[f.name])
    return found


def _check_folders(generated: Path, reference: Path, metrics: tuple[str, ...]) -> None:
    """FAD and KL compare two sets: the same folder, or one inside the other, would score a
    perfect match or mix the sets."""
    if not {"fad", "kl"} & set(metrics):
        return
    a, b = generated.resolve(), reference.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise EvaluationError(
            f"{generated} and {reference} are the same folder or one holds the other: "
            "give two separate folders"
        )


def _embed_each(
    embedder, files: list[Path], stage: str, progress: ProgressCallback
) -> dict[Path, Tensor]:
    """Each file's embeddings [n, D], in the embedder's rate and channels."""
    channels = getattr(embedder, "channels", 1)
    out = {}
    for i, path in enumerate(files):
        out[path] = embedder.embed_audio(load_audio(path, embedder.sample_rate, channels)[0])
        progress(stage, i + 1, len(files))
    return out


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
    _check_folders(generated_dir, reference_dir, options.metrics)
    generated, reference = list_audio(generated_dir), list_audio(reference_dir)
    prompts = (
        read_prompts(generated, generated_dir, prompts_file) if "clap" in options.metrics else {}
    )
    if "clap" in options.metrics and not prompts:
        raise EvaluationError(
            "the CLAP score needs the prompts: pass --prompts prompts.jsonl (file_name, text), "
            "keep `jen1 generate`'s .json sidecars beside the audio, or leave clap out of --metrics"
        )
    ref_by_key = {clip_key(r, reference_dir): r for r in reference}
    keys = {g: clip_key(g, generated_dir) for g in generated}
    pairs = [(g, ref_by_key[keys[g]]) for g in generated if keys[g] in ref_by_key]
    if "kl" in options.metrics and not pairs:
        raise EvaluationError(
            "the KL pairs each generated file with the reference of the same name, and no names "
            "match: name them alike, or leave kl out of --metrics"
        )
    notes: list[str] = []  # caveats for the reader, printed with the figures
    report: dict = {
        "generated": str(generated_dir),
        "reference": str(reference_dir),
        "files": {"generated": len(generated), "reference": len(reference)},
    }
    clap = None
    if "clap" in options.metrics or ("fad" in options.metrics and options.embedding == "clap"):
        clap = models.Clap.load(options.clap_model, options.device)
    generated_clap: dict[Path, Tensor] = {}  # FAD's CLAP embeddings, reused by the CLAP score
    if "fad" in options.metrics:
        embedder = (
            clap
            if options.embedding == "clap"
            else models.Encodec.load(options.encodec_model, options.device)
        )
        gen = _embed_each(embedder, generated, "embed generated", progress)
        if embedder is clap:
            generated_clap = gen
        report["fad"] = _fad(gen, embedder, reference, options, notes, progress)
    if "kl" in options.metrics:
        report["kl"] = _kl(pairs, keys, options, progress)
    if "clap" in options.metrics:
        files = [f for f in generated if f in prompts]
        missing = [f for f in files if f not in generated_clap]
        generated_clap.update(_embed_each(clap, missing, "embed generated", progress))
        report["clap_score"] = _clap_score(clap, files, generated_clap, prompts, keys, progress)
        if len(files) < len(generated):
            notes.append(f"{len(generated) - len(files)} generated file(s) had no prompt")
    report["notes"] = notes
    return report


def _fad(
    generated: dict[Path, Tensor],
    embedder,
    reference: list[Path],
    options: EvalOptions,
    notes: list[str],
    progress: ProgressCallback,
) -> dict:
    gen = torch.cat(list(generated.values()))
    ref = torch.cat(list(_embed_each(embedder, reference, "embed reference", progress).values()))
    for name, emb in (("generated", gen), ("reference", ref)):
        if len(emb) < 2:
            raise EvaluationError(
                f"FAD needs at least 2 {options.embedding} embeddings per set and the "
                f"{name} audio gives {len(emb)}: add files (CLAP embeds one per 10 s), or "
                "use --embedding encodec (one per latent frame)"
            )
        if len(emb) <= emb.shape[1]:
            notes.append(
                f"FAD: {len(emb)} {name} embeddings for {emb.shape[1]} dimensions: the "
                "covariance is singular and FAD is biased upwards; compare only runs with "
                "equal counts, or add audio"
            )
    return {
        "value": frechet_distance_of(gen, ref),
        "embedding": options.embedding,
        "model": embedder.name,
        "embeddings": {"generated": len(gen), "reference": len(ref)},
    }


def _kl(
    pairs: list[tuple[Path, Path]],
    keys: dict[Path, str],
    options: EvalOptions,
    progress: ProgressCallback,
) -> dict:
    classifier = models.AudioSetClassifier.load(options.classifier_model, options.device)
    values = []
    for i, (g, r) in enumerate(pairs):
        dists = [
            classifier.label_distribution(load_audio(p, classifier.sample_rate, 1)[0])
            for p in (r, g)
        ]
        values.append(kl_divergence(*dists))
        progress("classify", i + 1, len(pairs))
    return {
        "value": sum(values) / len(values),
        "model": classifier.name,
        "pairs": len(values),
        "per_file": {keys[g]: v for (g, _), v in zip(pairs, values, strict=True)},
    }


def _clap_score(
    clap,
    files: list[Path],
    embeddings: dict[Path, Tensor],
    prompts: dict[Path, str],
    keys: dict[Path, str],
    progress: ProgressCallback,
) -> dict:
    """Cosine of each file's mean (re-normalised) window embedding with its prompt's."""
    scores = []
    for i, f in enumerate(files):
        audio = torch.nn.functional.normalize(embeddings[f].mean(0), dim=-1)
        scores.append(float(audio @ clap.embed_text([prompts[f]])[0]))
        progress("clap score", i + 1, len(files))
    return {
        "value": sum(scores) / len(scores),
        "model": clap.name,
        "files": len(scores),
        "per_file": {keys[f]: s for f, s in zip(files, scores, strict=True)},
    }
