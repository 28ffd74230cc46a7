"""Stage 1 of `jen1 train`: the autoencoder (§4.1), on short crops of the training audio.

The SEANet codec trains with EnCodec's losses (waveform L1, multi-resolution STFT, and after
``--adversarial-start`` a multi-scale STFT discriminator with feature matching); the Fourier codec
(``decoder="istft"``) learns only its decoder, from its own magnitude losses.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

from jen1cli.training.data import AudioTextDataset, ResumableSampler
from jen1cli.training.discriminator import MultiScaleSTFTDiscriminator, STFTDiscriminatorConfig
from jen1cli.training.ema import EMA
from jen1cli.training.loop import (
    StepLoop,
    StopFlag,
    TrainHooks,
    TrainOptions,
    check_batch_size,
    export,
    load_run_model,
    make_loader,
    report_dataset,
)
from jen1cli.training.losses import (
    MultiResolutionSTFTLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    l1_waveform_loss,
)
from jen1cli.training.schedule import warmup_linear_decay

# EnCodec's loss weights (Défossez et al. 2022); JEN-1 names the same losses but not their weights.
AE_WEIGHTS = {"l1": 0.1, "stft": 1.0, "adversarial": 3.0, "feature": 3.0}


def train_autoencoder(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag: StopFlag
) -> None:
    """Train the run's autoencoder for ``options.max_steps`` steps, then export the run."""
    model = load_run_model(options, with_text=False)
    config = model.config
    dataset = AudioTextDataset(
        options.data_dir,
        options.autoencoder_seconds,
        config.sample_rate,
        config.autoencoder.audio_channels,
        options.seed,
    )
    report_dataset(dataset, hooks)
    check_batch_size(dataset, options, accelerator)
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
    loader = make_loader(dataset, options, sampler)
    autoencoder, discriminator, opt_g, opt_d, sched_g, sched_d, loader = accelerator.prepare(
        autoencoder, discriminator, opt_g, opt_d, sched_g, sched_d, loader
    )
    ema = EMA(accelerator.unwrap_model(autoencoder), options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed)
    loop = StepLoop(
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
    export(accelerator, model, options, "autoencoder", finished=not loop.cut_short)


def _train_fourier_autoencoder(model, dataset, options, accelerator, hooks, flag) -> None:
    """The Fourier codec learns its decoder from magnitude losses alone (its encoder is fixed)."""
    sampler = ResumableSampler(len(dataset), options.seed)
    autoencoder = model.autoencoder.train()
    opt = torch.optim.AdamW(autoencoder.parameters(), lr=options.autoencoder_lr, betas=(0.9, 0.99))
    warmup = min(options.warmup_steps, options.max_steps // 10)
    sched = warmup_linear_decay(opt, warmup, options.max_steps)
    loader = make_loader(dataset, options, sampler)
    autoencoder, opt, sched, loader = accelerator.prepare(autoencoder, opt, sched, loader)
    ema = EMA(accelerator.unwrap_model(autoencoder), options.ema_decay)
    generator = torch.Generator().manual_seed(options.seed)
    loop = StepLoop(
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
    export(accelerator, model, options, "autoencoder", finished=not loop.cut_short)
