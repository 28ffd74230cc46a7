"""What every command shares: options, error reporting, progress bars, model loading, outputs."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from jen1cli.progress import ProgressCallback, no_progress


class BadInput(ValueError):
    """A problem with what the user asked for: reported in one line, exit code 2."""


# Error classes of heavy modules (torch, transformers) that also mean "fix your input".
_HEAVY_BAD_INPUT = {
    "jen1cli.model": "ModelNotFoundError",
    "jen1cli.model_files": "ModelFolderError",
    "jen1cli.training.data": "DatasetError",
    "jen1cli.evaluation.metrics": "EvaluationError",
}


def bad_input_types() -> tuple[type[BaseException], ...]:
    """Every error class that means "fix your input" rather than "jen1 has a bug".

    A module that was never imported cannot have raised, so only the classes of modules already
    loaded are looked up: reporting a bad option never imports torch.
    """
    from jen1cli.audio_guard import AudioError

    types: list[type[BaseException]] = [BadInput, AudioError]
    for module, name in _HEAVY_BAD_INPUT.items():
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def report_and_exit(err: BaseException) -> None:
    """Print one line: exit 2 for bad input, 1 for anything else; JEN1_DEBUG=1 re-raises."""
    if os.environ.get("JEN1_DEBUG") == "1":
        raise err
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, bad_input_types()):
        typer.echo(f"jen1: error: {message}", err=True)
        raise SystemExit(2)
    typer.echo(
        f"jen1: internal error: {type(err).__name__}: {message} (set JEN1_DEBUG=1 for a traceback)",
        err=True,
    )
    raise SystemExit(1)


# --- shared options (Annotated aliases, so every command spells them the same way) ----------------
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model folder or Hugging Face repo id [default: the bundled model]."
    ),
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Random seed [default: a random one, recorded].")
]
StepsOpt = Annotated[
    int | None,
    typer.Option("--steps", min=1, max=1000, help="Diffusion steps [default: the model's]."),
]
CfgOpt = Annotated[
    float | None,
    typer.Option("--cfg", min=0.0, max=30.0, help="Guidance scale [default: the model's]."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Sampler: dpmsolver++, ddim or euler [default: the model's]."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="U-Net precision: auto (bf16 for U-Nets of 100 M+ parameters on GPUs and CPUs "
        "with native bf16, else fp32), fp32, or bf16 (about 3x faster for the full model on such "
        "CPUs; outputs differ at bf16's precision). fp16: GPUs only.",
    ),
]
LufsOpt = Annotated[
    float, typer.Option("--lufs", min=-70.0, max=0.0, help="Target integrated loudness (LUFS).")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output file.", dir_okay=False)
]
PromptOpt = Annotated[str, typer.Option("--prompt", "-p", help="Text describing the music.")]


NegativePromptOpt = Annotated[
    str | None,
    typer.Option(
        "--negative-prompt",
        help="Text to steer away from: guidance pushes from it instead of from no text.",
    ),
]

# Generation time and a batch's memory grow with the duration; past this, extend in parts.
MAX_SECONDS = 300.0
# Input files are encoded and decoded in chunks (long_audio.py), so only the whole-file buffers
# grow with the length (~0.35 GB per 30 min of 48 kHz stereo float each).
MAX_FILE_SECONDS = 1800.0


def check_duration(seconds: float, what: str) -> None:
    """Refuse zero, negative, non-finite or over-long durations of new music before any work."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"{what} must be a positive number of seconds, got {seconds:g}")
    if seconds > MAX_SECONDS:
        raise BadInput(
            f"{what} asks for {seconds:g} s of new audio; one run generates at most "
            f"{MAX_SECONDS:g} s: make longer pieces in parts with `jen1 continue`"
        )


def check_file_duration(seconds: float, what: str = "the input") -> None:
    """Refuse an input file longer than `MAX_FILE_SECONDS` before it is loaded."""
    if seconds > MAX_FILE_SECONDS:
        raise BadInput(
            f"{what} is {seconds:g} s long; jen1 takes files up to {MAX_FILE_SECONDS:g} s "
            f"({MAX_FILE_SECONDS / 60:g} min): cut it into parts first"
        )


def guidance_of(pipe, cfg: float | None) -> float:
    """The guidance scale a run uses: ``--cfg``, else the model's default."""
    return pipe.config.diffusion.guidance_scale if cfg is None else cfg


def check_negative_prompt(text: str | None, guidance_scale: float | None) -> None:
    """Refuse an empty negative prompt, or one that guidance scale 1 (no guidance) would ignore."""
    if text is None:
        return
    if not text.strip():
        raise BadInput(
            "--negative-prompt is empty: give the text to steer away from, or leave the option out"
        )
    if guidance_scale == 1.0:
        raise BadInput(
            "--negative-prompt needs guidance, but --cfg 1 turns it off: use a --cfg above 1"
        )


def _device_name(device: str) -> str:
    device = device.lower()
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise BadInput(f"unknown --device '{device}': use auto, cpu, cuda or mps")
    return device


def resolve_device(device: str) -> str:
    """Turn ``auto`` into the best available device; refuse one this machine lacks.

    Names are checked before torch is imported (only ``auto``, ``cuda`` and ``mps`` need it).
    """
    device = _device_name(device)
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput(
            "--device cuda asked for, but no CUDA GPU is visible: use --device cpu or auto"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise BadInput("--device mps asked for, but MPS is not available: use --device cpu or auto")
    return device


def check_scheduler(name: str | None) -> None:
    """Refuse an unknown sampler name before any model is loaded."""
    from jen1cli.diffusion.schedule import SCHEDULERS

    if name is not None and name not in SCHEDULERS:
        raise BadInput(f"unknown --scheduler '{name}': choose one of {', '.join(SCHEDULERS)}")


def default_model() -> str:
    """The bundled model folder (a clone's models/ or the installed copy), or $JEN1_MODEL."""
    if env := os.environ.get("JEN1_MODEL"):
        return env
    here = Path(__file__).resolve().parents[2] / "models" / "jen1-demo"
    installed = Path(sys.prefix) / "share" / "jen1" / "models" / "jen1-demo"
    for candidate in (here, installed):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise BadInput(
        "no bundled model found: pass --model with a model folder or Hugging Face repo id"
    )


# The names of Jen1Pipeline.UNET_DTYPES, here so that --dtype is checked without torch.
UNET_DTYPE_NAMES = ("fp32", "bf16", "fp16")


def check_dtype(dtype: str, device: str) -> str:
    """Refuse an unknown precision, and fp16 where it has no fast kernels (CPUs)."""
    dtype = dtype.lower()
    if dtype != "auto" and dtype not in UNET_DTYPE_NAMES:
        raise BadInput(f"unknown --dtype '{dtype}': choose auto, fp32, bf16 or fp16")
    if dtype == "fp16" and device == "cpu":
        raise BadInput(
            "--dtype fp16 is for GPUs (CPUs compute it hundreds of times slower): use bf16"
        )
    return dtype


def resolve_device_and_dtype(device: str, dtype: str) -> tuple[str, str]:
    """``--device`` resolved and ``--dtype`` checked; both names are refused before torch loads."""
    check_dtype(dtype, _device_name(device))  # "auto" may still turn out to be a CPU, below
    device = resolve_device(device)
    return device, check_dtype(dtype, device)


def load_pipeline(model: str | None, device: str, dtype: str = "fp32"):
    """Load the pipeline for ``--model`` on ``--device`` (offline once the model is cached), its
    U-Net in ``dtype`` (``auto``: native_bf16.auto_unet_dtype)."""
    from transformers.utils import logging as hf_logging

    from jen1cli.pipeline import Jen1Pipeline

    # Our own progress bars speak for the work; transformers' weight-loading bar would be noise.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    name = model or default_model()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    pipe = Jen1Pipeline.from_pretrained(name, device=device, local_files_only=offline)
    if dtype == "auto":
        from jen1cli.model import parameter_count
        from jen1cli.native_bf16 import auto_unet_dtype

        dtype = auto_unet_dtype(parameter_count(pipe.model.unet), device)
    return pipe.with_unet_dtype(dtype)


def check_output(path: Path, overwrite: bool) -> Path:
    """Before any work, refuse an existing output (without --overwrite) or an unusable folder."""
    path = path.expanduser()
    if path.exists() and path.is_dir():
        raise BadInput(f"output {path} is a folder: give a file name, e.g. {path / 'out.wav'}")
    if path.exists() and not overwrite:
        raise BadInput(
            f"{path} already exists: pass --overwrite to replace it, or choose another -o"
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BadInput(f"output folder {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK):
        raise BadInput(f"output folder {folder} is not writable: choose another -o")
    return path


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe short form of a prompt."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "jen1"


def write_sidecar(audio_path: Path, record: dict[str, Any], overwrite: bool = True) -> Path:
    """Write ``<audio>.json`` beside an output with how it was made (atomically)."""
    from jen1cli.audio import atomic_write

    path = audio_path.with_suffix(audio_path.suffix + ".json")
    text = json.dumps(record, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)


@contextmanager
def progress_bars(quiet: bool) -> Iterator[ProgressCallback]:
    """A rich progress callback on stderr (stdout stays clean for the written paths)."""
    if quiet:
        yield no_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    labels = {"denoise": "Denoising", "decode": "Decoding", "encode": "Encoding"}
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def callback(stage: str, done: int, total: int) -> None:
            if stage not in tasks or (done == 0 and progress.tasks[tasks[stage]].finished):
                tasks[stage] = progress.add_task(labels.get(stage, stage.capitalize()), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield callback
