"""`jen1 train`: train the whole model on a folder of captioned audio, with `accelerate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jen1cli.commands.common import BadInput, QuietOpt


def train(
    data_dir: Annotated[
        Path, typer.Argument(help="Folder with audio files and metadata.jsonl (file_name, text).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder: checkpoints, logs, exported model.")
    ],
    stage: Annotated[
        str, typer.Option("--stage", help="all, autoencoder, whitening or diffusion.")
    ] = "all",
    config: Annotated[
        str, typer.Option("--config", help="tiny, demo, full or a config.json path.")
    ] = "demo",
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=1, help="Optimizer steps per trained stage.")
    ] = 1000,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            min=0.0,
            help="Wall-clock budget per trained stage; the stage then ends early and exports.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Examples per step and process.")
    ] = 8,
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds", min=0.1, help="Crop length for diffusion [default: the model window]."
        ),
    ] = None,
    autoencoder_seconds: Annotated[float, typer.Option("--autoencoder-seconds", min=0.05)] = 1.0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run's latest checkpoint.")
    ] = False,
    init_from: Annotated[
        str | None, typer.Option("--init-from", help="EnCodec or jen1 model to start from.")
    ] = None,
    lr: Annotated[
        float, typer.Option("--lr", min=0.0, help="Diffusion learning rate (paper: 3e-5).")
    ] = 3e-5,
    autoencoder_lr: Annotated[float, typer.Option("--autoencoder-lr", min=0.0)] = 3e-4,
    adversarial_start: Annotated[
        float,
        typer.Option(
            "--adversarial-start",
            min=0.0,
            max=1.0,
            help="Share of autoencoder steps before the discriminator joins (1 = never).",
        ),
    ] = 0.25,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", min=0)] = 100,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", min=1, help="Gradient accumulation steps.")
    ] = 1,
    mixed_precision: Annotated[
        str, typer.Option("--mixed-precision", help="no, fp16 or bf16.")
    ] = "no",
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)] = 200,
    log_every: Annotated[int, typer.Option("--log-every", min=1)] = 10,
    sample_every: Annotated[
        int,
        typer.Option(
            "--sample-every", min=0, help="Log an audio sample to TensorBoard every N steps."
        ),
    ] = 0,
    snapshot_every: Annotated[
        int,
        typer.Option(
            "--snapshot-every",
            min=0,
            help="Keep the EMA weights every N steps in RUN/snapshots (a learning curve).",
        ),
    ] = 0,
    latent_cache: Annotated[
        bool, typer.Option("--latent-cache", help="Pre-encode latents once.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    num_workers: Annotated[int, typer.Option("--num-workers", min=0)] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Train the autoencoder, the whitening and the diffusion model on your own music.

    Example: jen1 train my-music/ --output runs/my-model --config demo --max-steps 20000
    """
    from jen1cli.presets import load_preset
    from jen1cli.training.checkpoint import has_checkpoint
    from jen1cli.training.trainer import STAGES, TrainingInterrupted, TrainOptions
    from jen1cli.training.trainer import train as run_training

    if stage != "all" and stage not in STAGES:
        raise BadInput(f"unknown --stage '{stage}': choose all, {', '.join(STAGES)}")
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise BadInput(f"unknown --mixed-precision '{mixed_precision}': choose no, fp16 or bf16")
    if not data_dir.is_dir():
        raise BadInput(
            f"data folder {data_dir} does not exist: give a folder with audio and metadata.jsonl"
        )
    started = [s for s in STAGES if has_checkpoint(output, s)]
    if started and not resume:
        raise BadInput(
            f"{output} already holds a training run ({', '.join(started)}): "
            "pass --resume to continue it, or choose another --output"
        )
    try:
        model_config = load_preset(config)
    except ValueError as err:
        raise BadInput(str(err)) from err
    text_encoder = None
    if config == "tiny" and not (output / "text_encoder").is_dir():
        from jen1cli.testing import tiny_text_encoder

        text_encoder = tiny_text_encoder()  # random: the tiny preset is for smoke tests only
    options = TrainOptions(
        data_dir=data_dir,
        output=output,
        config=model_config,
        stage=stage,
        max_steps=max_steps,
        max_minutes=max_minutes,
        batch_size=batch_size,
        seconds=seconds,
        autoencoder_seconds=autoencoder_seconds,
        resume=resume,
        init_from=init_from,
        lr=lr,
        autoencoder_lr=autoencoder_lr,
        adversarial_start=adversarial_start,
        warmup_steps=warmup_steps,
        grad_accum=grad_accum,
        mixed_precision=mixed_precision,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        sample_every=sample_every,
        snapshot_every=snapshot_every,
        latent_cache=latent_cache,
        seed=seed,
        num_workers=num_workers,
        text_encoder=text_encoder,
    )
    with _hooks(quiet) as hooks:
        try:
            folder = run_training(options, hooks)
        except TrainingInterrupted as stop:
            typer.echo(f"jen1: {stop}", err=True)
            raise SystemExit(128 + int(stop.signum)) from None  # 130 for SIGINT, 143 for SIGTERM
    typer.echo(str(folder))


def _hooks(quiet: bool):
    """Rich progress and log lines on stderr (the trainer only calls plain callbacks)."""
    from contextlib import contextmanager

    from jen1cli.training.trainer import TrainHooks

    @contextmanager
    def make():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True)
        if quiet:
            yield TrainHooks(log=lambda line: None)
            return
        with Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            tasks: dict[str, int] = {}

            def on_progress(stage: str, step: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=step, total=total)

            yield TrainHooks(
                progress=on_progress, log=lambda line: progress.console.print(line, highlight=False)
            )

    return make()
