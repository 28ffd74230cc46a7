"""Stage 3 of `jen1 train`: the multi-task diffusion U-Net (§4.3, §5) on whitened latents.

The autoencoder, whitening and text encoder are frozen; each step encodes the batch (or reads the
``--latent-cache``) and trains the U-Net on generation, inpainting and continuation at once.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn

from jen1cli.diffusion.objective import diffusion_loss
from jen1cli.diffusion.schedule import make_noise_scheduler
from jen1cli.training.data import AudioTextDataset, LatentCacheDataset, ResumableSampler
from jen1cli.training.ema import EMA
from jen1cli.training.loop import (
    StepLoop,
    StopFlag,
    TrainHooks,
    TrainOptions,
    check_batch_size,
    export,
    export_start,
    load_run_model,
    make_loader,
    report_dataset,
)
from jen1cli.training.schedule import warmup_linear_decay


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


def train_diffusion(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag: StopFlag
) -> None:
    """Train the run model's U-Net for ``options.max_steps`` steps (EMA weights), then export."""
    model = load_run_model(options, with_text=True)
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
        report_dataset(dataset, hooks)
    check_batch_size(dataset, options, accelerator)
    export_start(accelerator, model, options)
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
        objective, optimizer, scheduler, make_loader(dataset, options, sampler)
    )
    unet = accelerator.unwrap_model(objective).unet
    ema = EMA(unet, options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed + 1)
    loop = StepLoop(
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
    export(accelerator, model.cpu(), options, "diffusion", finished=not loop.cut_short)


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
