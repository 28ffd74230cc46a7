"""What every `jen1 train` stage shares: its options, the step loop, resume and export.

A stage (autoencoder.py, whitening.py, diffusion.py) builds its model, data and optimizer, then
runs :class:`StepLoop`, which counts steps, logs, checkpoints atomically (``checkpoints/<stage>/``),
resumes exactly (step, optimizer, LR schedule, EMA, RNG and data position), honours
``--max-minutes`` and stops cleanly on SIGINT/SIGTERM after saving. The stage ends with
:func:`export`, which writes the run folder as a model folder that `jen1 generate --model RUN`
loads.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from jen1cli.config import Jen1Config
from jen1cli.model import CONFIG_NAME, Jen1Model
from jen1cli.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from jen1cli.training.data import DatasetError, ResumableSampler

STAGES = ("autoencoder", "whitening", "diffusion")


@dataclass
class TrainOptions:
    """Everything `jen1 train` takes; defaults follow the paper (§5) where it says."""

    data_dir: Path
    output: Path
    config: Jen1Config
    stage: str = "all"
    max_steps: int = 1000
    max_minutes: float | None = None  # wall-clock budget per trained stage; it then ends early
    batch_size: int = 8
    seconds: float | None = None  # diffusion crop length; None = the model window
    autoencoder_seconds: float = 1.0  # short crops suffice for a convolutional codec
    resume: bool = False
    init_from: str | None = None
    lr: float = 3e-5  # §5
    autoencoder_lr: float = 3e-4
    warmup_steps: int = 100
    grad_accum: int = 1
    mixed_precision: str = "no"
    checkpoint_every: int = 200
    log_every: int = 10
    sample_every: int = 0  # diffusion: log an audio sample to TensorBoard every N steps (0 = never)
    snapshot_every: int = 0  # keep the EMA weights every N steps in RUN/snapshots (0 = never)
    sample_prompt: str = "a mellow piano ballad in D minor at 72 BPM"
    ema_decay: float = 0.999
    adversarial_start: float = 0.25  # fraction of the autoencoder steps before the GAN losses join
    seed: int = 0
    num_workers: int = 0
    latent_cache: bool = False
    log_dir: str | None = None  # TensorBoard; None = RUN/logs
    text_encoder: object | None = field(default=None, repr=False)  # a ready TextEncoder (tests)


@dataclass
class TrainHooks:
    """How training reports, without importing a UI: progress(stage, step, total) and log(line)."""

    progress: Callable[[str, int, int], None] = lambda stage, step, total: None
    log: Callable[[str], None] = print


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (then saves and exits)."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.stop = True
        self.signum = signum

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if isinstance(exc, TrainingInterrupted) and self.stop:
            exc.signum = self.signum  # the CLI exits 128 + signum (130 SIGINT, 143 SIGTERM)


class TrainingInterrupted(Exception):
    """Raised after a signal: the checkpoint is saved; `--resume` continues from it."""

    signum: int = signal.SIGINT  # which signal it was (set by StopFlag)


# --- the run folder's model --------------------------------------------------------------------
def load_run_model(options: TrainOptions, with_text: bool) -> Jen1Model:
    """The run folder's model if a stage exported one, else a new model (optionally initialised)."""
    if (options.output / CONFIG_NAME).is_file():
        model = Jen1Model.from_pretrained(
            options.output, load_text_encoder=with_text and options.text_encoder is None
        )
    else:
        model = Jen1Model(options.config)
        if options.init_from:
            _initialise(model, options.init_from)
    if with_text and options.text_encoder is not None:
        model.text_encoder = options.text_encoder
    elif with_text and model.text_encoder is None:
        # A diffusion-only run in a new folder (--stage diffusion --init-from MODEL): the frozen
        # encoder the config names, found beside the model it starts from.
        from jen1cli.model import load_text_encoder_for, resolve_model_folder

        # resolve: --init-from may be a Hub id, whose files are in a cache snapshot folder
        source = resolve_model_folder(options.init_from) if options.init_from else options.output
        model.text_encoder = load_text_encoder_for(model.config, source)
    return model


def _initialise(model: Jen1Model, source: str) -> None:
    """``--init-from``: an EnCodec checkpoint (its encoder/decoder) or a jen1 model folder."""
    import json

    from jen1cli.model import resolve_model_folder
    from jen1cli.modules.encodec_weights import autoencoder_from_encodec

    folder = Path(source)
    config_file = folder / CONFIG_NAME
    if (
        folder.is_dir()
        and config_file.is_file()
        and json.loads(config_file.read_text()).get("model_type") == "encodec"
    ):
        model.autoencoder.load_state_dict(
            autoencoder_from_encodec(folder, model.config.autoencoder).state_dict()
        )
        return
    if not folder.is_dir() and "encodec" in source.lower():
        model.autoencoder.load_state_dict(
            autoencoder_from_encodec(source, model.config.autoencoder).state_dict()
        )
        return
    other = Jen1Model.from_pretrained(resolve_model_folder(source), load_text_encoder=False)
    model.load_state_dict(other.state_dict(), strict=False)


def export(
    accelerator: Accelerator,
    model: Jen1Model,
    options: TrainOptions,
    stage: str,
    finished: bool = True,
) -> None:
    """Write the run folder as a model folder; mark the stage done unless it was cut short."""
    if accelerator.is_main_process:
        text_encoder = (
            model.text_encoder if model.text_encoder is not None else options.text_encoder
        )
        model.text_encoder = text_encoder
        model.save_pretrained(options.output)
        (options.output / "checkpoints").mkdir(exist_ok=True)
        if finished:  # a stage cut by --max-minutes stays resumable: --resume continues it
            (options.output / "checkpoints" / f"{stage}.done").write_text("finished\n")
    accelerator.wait_for_everyone()


def export_start(accelerator: Accelerator, model: Jen1Model, options: TrainOptions) -> None:
    """A run folder without a model (--stage diffusion --init-from MODEL into a new folder) gets
    the model it starts from, once, stage not marked done: an interrupted run then resumes with
    --resume alone, from its own folder (whitening and text encoder included)."""
    accelerator.wait_for_everyone()  # every process has loaded its model before the folder changes
    if accelerator.is_main_process and not (options.output / CONFIG_NAME).is_file():
        model.save_pretrained(options.output)
    accelerator.wait_for_everyone()


def clear_done_after(output: Path, stage: str, accelerator: Accelerator) -> None:
    """A stage that runs again changes what the later ones were built on: they must rerun."""
    if accelerator.is_main_process:
        for later in STAGES[STAGES.index(stage) + 1 :]:
            (output / "checkpoints" / f"{later}.done").unlink(missing_ok=True)
    accelerator.wait_for_everyone()


def stage_done(output: Path, stage: str) -> bool:
    """Whether ``stage`` finished in the run folder ``output`` (its ``.done`` mark exists)."""
    return (output / "checkpoints" / f"{stage}.done").is_file()


# --- data --------------------------------------------------------------------------------------
def make_loader(dataset, options: TrainOptions, sampler: ResumableSampler) -> DataLoader:
    """Full batches in the resumable sampler's order (the last partial batch is dropped)."""
    return DataLoader(
        dataset,
        batch_size=options.batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        drop_last=True,
        collate_fn=collate,
    )


def collate(items: list[dict]) -> dict:
    """Lists of the items' fields; their ``audio`` [B, C, N] or ``latents`` [B, k, T] stacked."""
    batch = {k: [item[k] for item in items] for k in items[0]}
    for key in ("audio", "latents"):
        if key in batch:
            batch[key] = torch.stack(batch[key])
    return batch


def check_batch_size(dataset, options: TrainOptions, accelerator: Accelerator) -> None:
    """An epoch must hold at least one full batch on every process (the loader drops the rest)."""
    needed = options.batch_size * accelerator.num_processes
    if len(dataset) < needed:
        raise DatasetError(
            f"the data set has {len(dataset)} usable files, fewer than one batch ({needed} = "
            f"--batch-size {options.batch_size} × {accelerator.num_processes} processes): "
            "lower --batch-size or add files"
        )


def report_dataset(dataset, hooks: TrainHooks) -> None:
    """Log the data set's size and what was skipped."""
    skipped = dataset.skipped_summary()
    hooks.log(
        f"data: {len(dataset)} files, {dataset.total_seconds / 3600:.2f} h"
        + (f"; skipped {skipped}" if skipped else "")
    )


# --- the step loop -----------------------------------------------------------------------------
class StepLoop:
    """The step loop of the trained stages: epochs, resume, checkpoints, logs, signals."""

    def __init__(self, stage, options, accelerator, hooks, flag, sampler, ema, generator, total):
        self.stage, self.options, self.accelerator = stage, options, accelerator
        self.hooks, self.flag, self.sampler, self.ema = hooks, flag, sampler, ema
        self.generator, self.total, self.step = generator, total, 0
        self.cut_short = False  # ended by --max-minutes before `total`
        budget = options.max_minutes
        self.deadline = None if budget is None else time.monotonic() + 60 * budget
        self._since = (time.monotonic(), 0)  # (time, step) of the last log line: the throughput

    def resume(self) -> None:
        """With ``--resume``, continue the stage's checkpoint if it has one."""
        if self.options.resume and has_checkpoint(self.options.output, self.stage):
            state = load_checkpoint(
                self.accelerator, self.options.output, self.stage, self.ema, self.generator
            )
            self.step = state["step"]
            self._since = (time.monotonic(), self.step)  # throughput counts this run's steps only
            self.sampler.load_state_dict(state["sampler"])
            self.hooks.log(f"{self.stage}: resumed at step {self.step}")

    def save(self) -> None:
        """Checkpoint the stage (atomically): weights, optimizer, schedule, EMA, RNG, data."""
        state = {"stage": self.stage, "step": self.step, "sampler": self.sampler.state_dict()}
        save_checkpoint(
            self.accelerator, self.options.output, self.stage, state, self.ema, self.generator
        )

    def _snapshot(self) -> None:
        """Keep this step's EMA weights (RUN/snapshots/STAGE-stepN.safetensors) for a learning
        curve; the checkpoint itself only ever holds the latest step."""
        folder = self.options.output / "snapshots"
        folder.mkdir(exist_ok=True)
        final = folder / f"{self.stage}-step{self.step:07d}.safetensors"
        tmp = final.with_name(f".{final.name}.tmp")
        shadow = {k: v.detach().cpu().contiguous() for k, v in self.ema.shadow.items()}
        save_file(shadow, tmp, metadata={"step": str(self.step), "stage": self.stage})
        tmp.replace(final)

    def batches(self, loader):
        """Yield batches until ``total`` steps; the caller does one optimizer step per batch."""
        while self.step < self.total:
            before = self.step
            for batch in loader:
                if self._out_of_time():
                    return
                yield batch
                if self.step >= self.total:
                    return
            if self.step == before and self.sampler.position == 0:
                raise RuntimeError("an epoch yielded no batch")  # guarded by check_batch_size
            self.sampler.set_epoch(self.sampler.epoch + 1)

    def _out_of_time(self) -> bool:
        """Past --max-minutes: save and end the stage early (it still exports, and stays
        unfinished, so --resume continues it)."""
        if self.deadline is None:
            return False
        # every process must agree, or one would wait forever in the next collective
        late = time.monotonic() > self.deadline
        flag = torch.tensor([float(late)], device=self.accelerator.device)
        if not bool(self.accelerator.reduce(flag, reduction="sum").item()):
            return False
        self.save()
        self.cut_short = True
        self.hooks.log(
            f"{self.stage}: --max-minutes reached at step {self.step}/{self.total}; exported, "
            "--resume continues the stage"
        )
        return True

    def after_step(self, logs: dict[str, float]) -> None:
        """Count the step; log, checkpoint and snapshot when due; stop after a signal."""
        self.step += 1
        self.sampler.advance(self.options.batch_size * self.accelerator.num_processes)
        self.hooks.progress(self.stage, self.step, self.total)
        if self.step % self.options.log_every == 0 or self.step == self.total:
            now, before = time.monotonic(), self._since
            samples = (self.step - before[1]) * self.options.batch_size
            samples *= self.options.grad_accum * self.accelerator.num_processes
            logs = {**logs, "samples/s": samples / max(now - before[0], 1e-9)}
            self._since = (now, self.step)
            self.accelerator.log({f"{self.stage}/{k}": v for k, v in logs.items()}, step=self.step)
            text = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
            self.hooks.log(f"{self.stage} step {self.step}/{self.total}: {text}")
        if self.step % self.options.checkpoint_every == 0 or self.step == self.total:
            self.save()
        every = self.options.snapshot_every
        if every and self.step % every == 0 and self.accelerator.is_main_process:
            self._snapshot()
        if self.flag.stop:
            self.save()
            raise TrainingInterrupted(
                f"interrupted at {self.stage} step {self.step}; checkpoint saved, "
                "continue with --resume"
            )
