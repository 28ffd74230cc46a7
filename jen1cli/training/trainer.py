"""`jen1 train`: the autoencoder, whitening and diffusion stages on `accelerate`.

Every stage checkpoints atomically (``checkpoints/<stage>/``), resumes exactly (step, optimizer,
LR schedule, EMA, RNG and data position), stops cleanly on SIGINT/SIGTERM after saving, and ends by
exporting the run folder as a model folder that `jen1 generate --model RUN` loads.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from jen1cli.config import Jen1Config
from jen1cli.diffusion.objective import diffusion_loss
from jen1cli.diffusion.schedule import make_noise_scheduler
from jen1cli.model import CONFIG_NAME, Jen1Model
from jen1cli.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from jen1cli.training.data import (
    AudioTextDataset,
    DatasetError,
    LatentCacheDataset,
    ResumableSampler,
    save_latent_item,
)
from jen1cli.training.discriminator import MultiScaleSTFTDiscriminator, STFTDiscriminatorConfig
from jen1cli.training.ema import EMA
from jen1cli.training.losses import (
    MultiResolutionSTFTLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    l1_waveform_loss,
)
from jen1cli.training.schedule import warmup_linear_decay

STAGES = ("autoencoder", "whitening", "diffusion")
# EnCodec's loss weights (Défossez et al. 2022); JEN-1 names the same losses but not their weights.
AE_WEIGHTS = {"l1": 0.1, "stft": 1.0, "adversarial": 3.0, "feature": 3.0}


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


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (then saves and exits)."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainingInterrupted(Exception):
    """Raised after a signal: the checkpoint is saved; `--resume` continues from it."""


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
    with _StopFlag() as flag:
        for stage in stages:
            if options.resume and _stage_done(options.output, stage):
                hooks.log(f"{stage}: already finished, skipped")
                continue
            _clear_done_after(options.output, stage, accelerator)
            {
                "autoencoder": _train_autoencoder,
                "whitening": _fit_whitening,
                "diffusion": _train_diffusion,
            }[stage](options, accelerator, hooks, flag)
    accelerator.end_training()
    return options.output


def _distributed_without_cuda() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


# --- model folder of the run -------------------------------------------------------------------
def _load_run_model(options: TrainOptions, with_text: bool) -> Jen1Model:
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


def _export(
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


def _export_start(accelerator: Accelerator, model: Jen1Model, options: TrainOptions) -> None:
    """A run folder without a model (--stage diffusion --init-from MODEL into a new folder) gets
    the model it starts from, once, stage not marked done: an interrupted run then resumes with
    --resume alone, from its own folder (whitening and text encoder included)."""
    accelerator.wait_for_everyone()  # every process has loaded its model before the folder changes
    if accelerator.is_main_process and not (options.output / CONFIG_NAME).is_file():
        model.save_pretrained(options.output)
    accelerator.wait_for_everyone()


def _clear_done_after(output: Path, stage: str, accelerator: Accelerator) -> None:
    """A stage that runs again changes what the later ones were built on: they must rerun."""
    if accelerator.is_main_process:
        for later in STAGES[STAGES.index(stage) + 1 :]:
            (output / "checkpoints" / f"{later}.done").unlink(missing_ok=True)
    accelerator.wait_for_everyone()


def _stage_done(output: Path, stage: str) -> bool:
    return (output / "checkpoints" / f"{stage}.done").is_file()


def _loader(dataset, options: TrainOptions, sampler: ResumableSampler) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=options.batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        drop_last=True,
        collate_fn=_collate,
    )


def _collate(items: list[dict]) -> dict:
    batch = {k: [item[k] for item in items] for k in items[0]}
    for key in ("audio", "latents"):
        if key in batch:
            batch[key] = torch.stack(batch[key])
    return batch


class _Loop:
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
        if self.options.resume and has_checkpoint(self.options.output, self.stage):
            state = load_checkpoint(
                self.accelerator, self.options.output, self.stage, self.ema, self.generator
            )
            self.step = state["step"]
            self._since = (time.monotonic(), self.step)  # throughput counts this run's steps only
            self.sampler.load_state_dict(state["sampler"])
            self.hooks.log(f"{self.stage}: resumed at step {self.step}")

    def save(self) -> None:
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
                raise RuntimeError("an epoch yielded no batch")  # guarded by _check_batch_size
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


# --- stage 1: autoencoder (§4.1) ---------------------------------------------------------------
def _train_autoencoder(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag
) -> None:
    model = _load_run_model(options, with_text=False)
    config = model.config
    dataset = AudioTextDataset(
        options.data_dir,
        options.autoencoder_seconds,
        config.sample_rate,
        config.autoencoder.audio_channels,
        options.seed,
    )
    _report_dataset(dataset, hooks)
    _check_batch_size(dataset, options, accelerator)
    if config.autoencoder.decoder == "istft":
        _train_fourier_autoencoder(model, dataset, options, accelerator, hooks, flag)
        return
    sampler = ResumableSampler(len(dataset), options.seed)
    autoencoder = model.autoencoder.train()
    discriminator = MultiScaleSTFTDiscriminator(
        STFTDiscriminatorConfig(
            audio_channels=config.autoencoder.audio_channels, filters=16, max_filters=256
        )
    )
    opt_g = torch.optim.AdamW(autoencoder.parameters(), lr=options.autoencoder_lr, betas=(0.5, 0.9))
    opt_d = torch.optim.AdamW(
        discriminator.parameters(), lr=options.autoencoder_lr, betas=(0.5, 0.9)
    )
    warmup = min(options.warmup_steps, options.max_steps // 10)
    sched_g = warmup_linear_decay(opt_g, warmup, options.max_steps)
    sched_d = warmup_linear_decay(opt_d, warmup, options.max_steps)
    loader = _loader(dataset, options, sampler)
    autoencoder, discriminator, opt_g, opt_d, sched_g, sched_d, loader = accelerator.prepare(
        autoencoder, discriminator, opt_g, opt_d, sched_g, sched_d, loader
    )
    ema = EMA(accelerator.unwrap_model(autoencoder), options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed)
    loop = _Loop(
        "autoencoder", options, accelerator, hooks, flag, sampler, ema, generator, options.max_steps
    )
    loop.resume()
    stft = MultiResolutionSTFTLoss()
    adversarial_from = int(options.adversarial_start * options.max_steps)
    for batch in loop.batches(loader):
        real = batch["audio"]
        output = autoencoder(real)  # masks 5 % of latent frames before the decoder (train mode)
        fake = output.audio
        use_gan = loop.step >= adversarial_from
        logs = {"l1": l1_waveform_loss(fake, real), "stft": stft(fake, real)}
        if use_gan:
            real_logits, real_features = discriminator(real)
            fake_logits, fake_features = discriminator(fake)
            logs["adversarial"] = generator_hinge_loss(fake_logits)
            logs["feature"] = feature_matching_loss(real_features, fake_features)
        loss = sum(AE_WEIGHTS[k] * v for k, v in logs.items())
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(autoencoder.parameters(), 1.0)
        opt_g.step()
        sched_g.step()
        if use_gan:
            real_logits, _ = discriminator(real)
            fake_logits, _ = discriminator(fake.detach())
            loss_d = discriminator_hinge_loss(real_logits, fake_logits)
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(loss_d)
            opt_d.step()
            sched_d.step()  # the discriminator's schedule starts when it does
            logs["discriminator"] = loss_d
        ema.update(accelerator.unwrap_model(autoencoder))
        loop.after_step({k: float(v.detach()) for k, v in logs.items()})
    ema.copy_to(accelerator.unwrap_model(autoencoder))
    model.autoencoder = accelerator.unwrap_model(autoencoder).eval()
    _export(accelerator, model, options, "autoencoder", finished=not loop.cut_short)


def _train_fourier_autoencoder(model, dataset, options, accelerator, hooks, flag) -> None:
    """The Fourier codec learns its decoder from magnitude losses alone (its encoder is fixed)."""
    sampler = ResumableSampler(len(dataset), options.seed)
    autoencoder = model.autoencoder.train()
    opt = torch.optim.AdamW(autoencoder.parameters(), lr=options.autoencoder_lr, betas=(0.9, 0.99))
    warmup = min(options.warmup_steps, options.max_steps // 10)
    sched = warmup_linear_decay(opt, warmup, options.max_steps)
    loader = _loader(dataset, options, sampler)
    autoencoder, opt, sched, loader = accelerator.prepare(autoencoder, opt, sched, loader)
    ema = EMA(accelerator.unwrap_model(autoencoder), options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed)
    loop = _Loop(
        "autoencoder", options, accelerator, hooks, flag, sampler, ema, generator, options.max_steps
    )
    loop.resume()
    for batch in loop.batches(loader):
        logs = autoencoder(batch["audio"], losses=True)
        loss = sum(logs.values())
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(autoencoder.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(accelerator.unwrap_model(autoencoder))
        loop.after_step({k: float(v.detach()) for k, v in logs.items()})
    ema.copy_to(accelerator.unwrap_model(autoencoder))
    model.autoencoder = accelerator.unwrap_model(autoencoder).eval()
    _export(accelerator, model, options, "autoencoder", finished=not loop.cut_short)


# --- stage 2: whitening (Algorithm 1) -----------------------------------------------------------
@torch.no_grad()
def _fit_whitening(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag
) -> None:
    model = _load_run_model(options, with_text=False)
    config = model.config
    seconds = options.seconds or config.window_seconds
    dataset = AudioTextDataset(
        options.data_dir,
        seconds,
        config.sample_rate,
        config.autoencoder.audio_channels,
        options.seed,
    )
    _report_dataset(dataset, hooks)
    autoencoder = model.autoencoder.eval().to(accelerator.device)
    whitener = type(model.whitener)(config.whitener).to(accelerator.device)  # fresh statistics
    loader = accelerator.prepare(
        DataLoader(
            dataset,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
            collate_fn=_collate,
        )
    )
    total = len(loader)
    for i, batch in enumerate(loader):
        latents = accelerator.gather(autoencoder.encode(batch["audio"]))  # every process's frames
        whitener.update(latents)
        hooks.progress("whitening", i + 1, total)
        if flag.stop:
            raise TrainingInterrupted(
                "interrupted while fitting the whitening; it restarts from scratch"
            )
    whitener.fit()
    model.whitener = whitener.cpu()
    hooks.log(
        f"whitening: fitted on {int(whitener.count)} latent frames, "
        f"keeping {config.whitener.keep_dim} dims"
    )
    if options.latent_cache:
        _write_latent_cache(options, model, dataset, accelerator, hooks)
    _export(accelerator, model, options, "whitening")


class _WholeFiles(torch.utils.data.Dataset):
    """Each entry's audio whole (up to 5 minutes), so loader workers read while the GPU encodes."""

    def __init__(self, entries, sample_rate: int, channels: int) -> None:
        self.entries, self.sample_rate, self.channels = entries, sample_rate, channels

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        from jen1cli.audio import load_audio

        entry = self.entries[index]
        audio, _ = load_audio(entry.path, self.sample_rate, self.channels)
        return audio[:, : 300 * self.sample_rate], entry


def _as_is(item):
    return item


def _write_latent_cache(options, model, dataset, accelerator, hooks) -> None:
    """Encode every file whole once; diffusion training then skips the codec."""
    cache = options.output / "latents"
    cache.mkdir(exist_ok=True)
    autoencoder = model.autoencoder.to(accelerator.device)
    whitener = model.whitener.to(accelerator.device)
    entries = dataset.entries[accelerator.process_index :: accelerator.num_processes]
    files = _WholeFiles(entries, model.config.sample_rate, model.config.autoencoder.audio_channels)
    loader = DataLoader(files, batch_size=None, num_workers=options.num_workers, collate_fn=_as_is)
    for i, (audio, entry) in enumerate(loader):
        latents = whitener(autoencoder.encode(audio[None].to(accelerator.device)))[0].cpu()
        save_latent_item(cache / f"{entry.path.stem}.safetensors", latents, entry.text)
        hooks.progress("latent cache", i + 1, len(entries))
    accelerator.wait_for_everyone()


# --- stage 3: diffusion (§4.3, §5) --------------------------------------------------------------
class DiffusionObjective(nn.Module):
    """The multi-task loss as one module, so data-parallel wrappers see one forward per step
    (``diffusion_loss`` runs the U-Net once per mode)."""

    def __init__(self, unet: nn.Module, config) -> None:
        super().__init__()
        self.unet = unet
        self.config = config
        self.noise_scheduler = make_noise_scheduler(config)

    def forward(self, latents, context, context_mask, generator):
        out = diffusion_loss(
            self.unet, latents, context, context_mask, self.noise_scheduler, self.config, generator
        )
        return out.loss, out.per_task


def _train_diffusion(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag
) -> None:
    model = _load_run_model(options, with_text=True)
    config = model.config
    if not model.whitener.fitted:
        raise ValueError(
            "the run has no whitening statistics yet: run --stage whitening (or all) first"
        )
    cache = options.output / "latents"
    seconds = options.seconds or config.window_seconds
    if options.latent_cache and cache.is_dir():
        frames = max(1, round(seconds * config.autoencoder.frame_rate))
        dataset = LatentCacheDataset(cache, frames, options.seed)
    else:
        dataset = AudioTextDataset(
            options.data_dir,
            seconds,
            config.sample_rate,
            config.autoencoder.audio_channels,
            options.seed,
        )
        _report_dataset(dataset, hooks)
    _check_batch_size(dataset, options, accelerator)
    _export_start(accelerator, model, options)
    sampler = ResumableSampler(len(dataset), options.seed)
    frozen = nn.ModuleDict({"autoencoder": model.autoencoder, "whitener": model.whitener}).eval()
    frozen.requires_grad_(False)
    frozen.to(accelerator.device)
    text_encoder = model.text_encoder.to(accelerator.device)
    # Captions repeat every epoch: keep all their states, so the frozen encoder runs once each.
    text_encoder.cache_size = max(text_encoder.cache_size, len(dataset))
    objective = DiffusionObjective(model.unet.train(), config.diffusion)
    optimizer = torch.optim.AdamW(
        objective.parameters(), lr=options.lr, betas=(0.9, 0.95), weight_decay=0.1
    )
    scheduler = warmup_linear_decay(
        optimizer, min(options.warmup_steps, options.max_steps // 10), options.max_steps
    )
    objective, optimizer, scheduler, loader = accelerator.prepare(
        objective, optimizer, scheduler, _loader(dataset, options, sampler)
    )
    unet = accelerator.unwrap_model(objective).unet
    ema = EMA(unet, options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed + 1)
    loop = _Loop(
        "diffusion", options, accelerator, hooks, flag, sampler, ema, generator, options.max_steps
    )
    loop.resume()
    for batch in loop.batches(loader):
        with torch.no_grad():
            if "latents" in batch:
                latents = batch["latents"]
            else:
                latents = frozen["whitener"](frozen["autoencoder"].encode(batch["audio"]))
            context, context_mask = text_encoder(batch["text"])
        with accelerator.accumulate(objective):
            loss, per_task = objective(latents, context, context_mask, generator)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(objective.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            ema.update(unet)
            loop.after_step(
                {"loss": float(loss.detach()), **per_task, "lr": scheduler.get_last_lr()[0]}
            )
            if options.sample_every and loop.step % options.sample_every == 0:
                _log_sample(
                    accelerator, unet, ema, frozen, text_encoder, config, options, loop.step
                )
    ema.copy_to(unet)
    model.unet = unet.eval()
    model.text_encoder = text_encoder.cpu()
    _export(accelerator, model.cpu(), options, "diffusion", finished=not loop.cut_short)


@torch.no_grad()
def _log_sample(accelerator, unet, ema, frozen, text_encoder, config, options, step) -> None:
    """Generate a short clip with the EMA weights and log it (mono mixdown) to TensorBoard."""
    import copy

    from jen1cli.diffusion.sampling import sample

    if not accelerator.is_main_process:
        return
    averaged = copy.deepcopy(unet).eval()
    ema.copy_to(averaged)
    frames = min(config.window_frames, round(4 * config.autoencoder.frame_rate))
    context, context_mask = text_encoder([options.sample_prompt])
    latents = sample(
        averaged,
        shape=(1, config.unet.latent_channels, frames),
        context=context,
        context_mask=context_mask,
        generator=torch.Generator().manual_seed(options.seed),
        diffusion_config=config.diffusion,
    )
    audio = frozen["autoencoder"].decode(frozen["whitener"].inverse(latents)).clamp(-1, 1)
    tracker = accelerator.get_tracker("tensorboard", unwrap=True)
    tracker.add_audio(
        "diffusion/sample", audio[0].mean(0, keepdim=True).cpu(), step, config.sample_rate
    )


def _check_batch_size(dataset, options: TrainOptions, accelerator: Accelerator) -> None:
    """An epoch must hold at least one full batch on every process (the loader drops the rest)."""
    needed = options.batch_size * accelerator.num_processes
    if len(dataset) < needed:
        raise DatasetError(
            f"the data set has {len(dataset)} usable files, fewer than one batch ({needed} = "
            f"--batch-size {options.batch_size} × {accelerator.num_processes} processes): "
            "lower --batch-size or add files"
        )


def _report_dataset(dataset, hooks: TrainHooks) -> None:
    skipped = dataset.skipped_summary()
    hooks.log(
        f"data: {len(dataset)} files, {dataset.total_seconds / 3600:.2f} h"
        + (f"; skipped {skipped}" if skipped else "")
    )
