"""`jen1 train`: the autoencoder, whitening and diffusion stages, in order, on `accelerate`.

One file per stage: autoencoder.py, whitening.py, diffusion.py; loop.py holds what they share
(the options, the step loop with its checkpoints and resume, and the export). Every stage
checkpoints atomically (``checkpoints/<stage>/``), resumes exactly (step, optimizer, LR schedule,
EMA, RNG and data position), stops cleanly on SIGINT/SIGTERM after saving, and ends by exporting
the run folder as a model folder that `jen1 generate --model RUN` loads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from jen1cli.training.autoencoder import AE_WEIGHTS, train_autoencoder
from jen1cli.training.diffusion import DiffusionObjective, train_diffusion
from jen1cli.training.loop import (
    STAGES,
    StopFlag,
    TrainHooks,
    TrainingInterrupted,
    TrainOptions,
    clear_done_after,
    stage_done,
)
from jen1cli.training.whitening import fit_whitening

__all__ = [
    "AE_WEIGHTS",
    "STAGES",
    "DiffusionObjective",
    "TrainHooks",
    "TrainOptions",
    "TrainingInterrupted",
    "train",
]

RUN_STAGE = {
    "autoencoder": train_autoencoder,
    "whitening": fit_whitening,
    "diffusion": train_diffusion,
}


def train(options: TrainOptions, hooks: TrainHooks | None = None) -> Path:
    """Run the asked stage(s); return the exported model folder (the run folder itself)."""
    hooks = hooks or TrainHooks()
    stages = STAGES if options.stage == "all" else (options.stage,)
    if options.stage != "all" and options.stage not in STAGES:
        raise ValueError(f"unknown --stage '{options.stage}': choose all, {', '.join(STAGES)}")
    accelerator = Accelerator(
        # Several processes on a machine without CUDA (e.g. `accelerate launch --multi_gpu
        # --num_processes 2` on CPUs): accelerate only forms a gloo group when asked for the CPU.
        cpu=_distributed_without_cuda(),
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=options.grad_accum,
        log_with="tensorboard",
        project_dir=str(options.log_dir or options.output / "logs"),
    )
    if not accelerator.is_main_process:
        hooks = TrainHooks(log=lambda line: None)
    set_seed(options.seed)
    hooks.log(
        f"accelerate: {accelerator.num_processes} process(es) on {accelerator.device.type}, "
        f"mixed precision {accelerator.mixed_precision}"
    )
    options.output.mkdir(parents=True, exist_ok=True)
    accelerator.init_trackers("jen1")
    with StopFlag() as flag:
        for stage in stages:
            if options.resume and stage_done(options.output, stage):
                hooks.log(f"{stage}: already finished, skipped")
                continue
            clear_done_after(options.output, stage, accelerator)
            RUN_STAGE[stage](options, accelerator, hooks, flag)
    accelerator.end_training()
    return options.output


def _distributed_without_cuda() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
