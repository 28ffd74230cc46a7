"""`jen1 eval`: the paper's objective metrics (FAD, KL, CLAP score) of generated audio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jen1cli import __version__
from jen1cli.commands.common import (
    BadInput,
    DeviceOpt,
    OverwriteOpt,
    QuietOpt,
    check_output,
    progress_bars,
    resolve_device,
)
from jen1cli.evaluation import DEFAULT_CLAP, DEFAULT_CLASSIFIER, DEFAULT_ENCODEC


def evaluate(
    generated_dir: Annotated[Path, typer.Argument(help="Folder of generated audio.")],
    reference_dir: Annotated[Path, typer.Argument(help="Folder of reference (real) audio.")],
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="JSON lines with file_name and text [default: generate's .json sidecars].",
            dir_okay=False,
        ),
    ] = None,
    metrics: Annotated[
        str, typer.Option("--metrics", help="Comma-separated: fad, kl, clap.")
    ] = "fad,kl,clap",
    embedding: Annotated[
        str, typer.Option("--embedding", help="FAD embedding: clap or encodec.")
    ] = "clap",
    clap_model: Annotated[
        str, typer.Option("--clap-model", help="CLAP repo id or folder.")
    ] = DEFAULT_CLAP,
    encodec_model: Annotated[
        str, typer.Option("--encodec-model", help="EnCodec repo id or folder.")
    ] = DEFAULT_ENCODEC,
    classifier_model: Annotated[
        str, typer.Option("--classifier", help="AudioSet classifier repo id or folder.")
    ] = DEFAULT_CLASSIFIER,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSON report.", dir_okay=False)
    ] = Path("eval.json"),
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score generated audio against references: FAD, KL (AudioSet labels) and CLAP score.

    Example: jen1 eval generated/ reference/ --prompts prompts.jsonl -o eval.json
    """
    from transformers.utils import logging as hf_logging

    from jen1cli.audio import atomic_write
    from jen1cli.evaluation.metrics import EvalOptions
    from jen1cli.evaluation.metrics import evaluate as run_evaluation

    chosen = tuple(m.strip().lower() for m in metrics.split(",") if m.strip())
    if not chosen:
        raise BadInput("--metrics is empty: give some of fad, kl, clap")
    if prompts is not None and not prompts.is_file():
        raise BadInput(f"--prompts file {prompts} does not exist")
    output = check_output(output, overwrite)
    options = EvalOptions(
        metrics=chosen,
        embedding=embedding.lower(),
        clap_model=clap_model,
        encodec_model=encodec_model,
        classifier_model=classifier_model,
        device=resolve_device(device),
    )
    hf_logging.disable_progress_bar()  # our own bars speak for the work
    hf_logging.set_verbosity_error()
    with progress_bars(quiet) as callback:
        report = run_evaluation(generated_dir, reference_dir, prompts, options, callback)
    report["jen1_version"] = __version__
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(output, lambda tmp: tmp.write_text(text), overwrite=overwrite)
    for line in summary_lines(report):
        typer.echo(line)
    typer.echo(str(output))


def summary_lines(report: dict) -> list[str]:
    """One line per metric, for the terminal."""
    lines = []
    if "fad" in report:
        fad = report["fad"]
        lines.append(f"FAD ({fad['embedding']}, {fad['model']}): {fad['value']:.4f}")
    if "kl" in report:
        kl = report["kl"]
        lines.append(f"KL (AudioSet labels, {kl['model']}, {kl['pairs']} pairs): {kl['value']:.4f}")
    if "clap_score" in report:
        clap = report["clap_score"]
        lines.append(f"CLAP score ({clap['model']}, {clap['files']} files): {clap['value']:.4f}")
    return lines + [f"note: {n}" for n in report.get("notes", [])]
