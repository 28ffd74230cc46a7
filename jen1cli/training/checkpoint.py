"""Atomic, resumable training checkpoints: accelerate's state plus our own small extras.

A checkpoint is a folder ``checkpoints/<stage>/`` holding accelerate's ``save_state`` (models,
optimizers, LR schedules, RNG states), ``ema.safetensors`` and ``trainer_state.json`` (step, data
position, the training generator's state). It is written to a temp folder and renamed into place,
so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from jen1cli.training.ema import EMA

STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
GENERATOR_FILE = "generator.safetensors"


def checkpoint_dir(output: Path, stage: str) -> Path:
    return output / "checkpoints" / stage


def has_checkpoint(output: Path, stage: str) -> bool:
    return (checkpoint_dir(output, stage) / STATE_FILE).is_file()


def save_checkpoint(
    accelerator: Accelerator,
    output: Path,
    stage: str,
    state: dict[str, Any],
    ema: EMA | None,
    generator: torch.Generator,
) -> Path:
    """Write the checkpoint of ``stage`` atomically (every process takes part in save_state)."""
    final = checkpoint_dir(output, stage)
    tmp = final.with_name(f".{stage}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        if ema is not None:
            shadow = {k: v.contiguous() for k, v in ema.shadow.items()}
            save_file(shadow, tmp / EMA_FILE, metadata={"num_updates": str(ema.num_updates)})
        save_file({"state": generator.get_state()}, tmp / GENERATOR_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        old = final.with_name(f".{stage}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, output: Path, stage: str, ema: EMA | None, generator: torch.Generator
) -> dict[str, Any]:
    """Restore what ``save_checkpoint`` wrote; return the trainer state (step, data position)."""
    folder = checkpoint_dir(output, stage)
    accelerator.load_state(str(folder))
    if ema is not None:
        meta = _metadata(folder / EMA_FILE)
        shadow = load_file(folder / EMA_FILE)
        ema.load_state_dict(
            {"decay": ema.decay, "num_updates": int(meta["num_updates"]), "shadow": shadow}
        )
    generator.set_state(load_file(folder / GENERATOR_FILE)["state"])
    return json.loads((folder / STATE_FILE).read_text())


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}
