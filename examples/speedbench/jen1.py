"""Ours: full-size JEN-1 (``presets.full_config()``) with a FLAN-T5-large-sized text encoder.

the config's DPM-Solver++ steps (25) with classifier-free guidance batched into one batch-2
forward, whitener inverse, autoencoder decode; past the 10 s window the windows of the
pipeline's rollout.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .measure import Clock, MemoryProbe, count_flops, param_counts, stage, text_stage
from .settings import PROMPT_TOKENS, Settings, random_ids, t5_config, time_text_encoder


def jen1_windows(total_frames: int, window: int) -> list[tuple[int, int, bool]]:
    """The (frames, known context frames, causal) windows ``Jen1Pipeline._rollout`` denoises."""
    from jen1cli.pipeline import rollout_windows

    first = min(total_frames, window)
    rollout = rollout_windows(first, total_frames, window)
    return [(first, 0, False)] + [(context + new, context, True) for context, new in rollout]


def bench_jen1(settings: Settings, clock: Clock) -> dict[str, Any]:
    """Our full-size model: text encoding, guided denoising (every window), decode."""
    from transformers import T5EncoderModel

    from jen1cli.diffusion.sampling import predict_noise, sample
    from jen1cli.model import Jen1Model
    from jen1cli.presets import full_config
    from jen1cli.testing import tiny_config

    dev, dtype, secs = settings.device, settings.dtype, settings.seconds
    config = full = full_config()
    if settings.tiny:  # tiny networks, but the full model's window and sampling
        config = tiny_config(window_seconds=full.window_seconds)
        config.diffusion = full.diffusion
    te_config = t5_config("flan-t5-large", settings.tiny)
    memory = MemoryProbe(dev)
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = Jen1Model(config).eval()
        text_encoder = T5EncoderModel(te_config).eval()
    model.to(dtype)  # the whitener keeps its float64 statistics (Whitener._apply)
    text_encoder.to(dtype)
    # An unfitted whitener refuses to run: fit it on random latents (its cost is one matmul).
    model.whitener.update(torch.randn(1, config.whitener.latent_dim, 1000, device=dev))
    model.whitener.fit()
    build_seconds = time.perf_counter() - t0
    memory.start()

    sr, hop = config.sample_rate, config.autoencoder.hop_length
    n_samples = round(secs * sr)
    total_frames = math.ceil(n_samples / hop)
    windows = jen1_windows(total_frames, config.window_frames)
    steps = config.diffusion.num_inference_steps
    guidance = config.diffusion.guidance_scale
    k = config.unet.latent_channels

    with torch.inference_mode():
        ids = random_ids(te_config.vocab_size, PROMPT_TOKENS, dev)
        text_s, text_cpu, context, text_flops = time_text_encoder(
            text_encoder, ids, clock, settings, count=True
        )
        context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=dev)

        # Each distinct window shape is timed once (a 10 s clip is one window; longer clips add
        # causal windows, mostly of one shape) and counted for every window of that shape.
        n_run = settings.steps(steps)
        shapes: dict[tuple[int, bool], dict[str, Any]] = {}
        clock.take_cpu()
        for frames, known, causal in windows:
            if (frames, causal) in shapes:
                continue
            mask = torch.ones(1, 1, frames, device=dev)
            masked = torch.zeros(1, k, frames, device=dev)
            # A rollout window starts with known context (the cost is the same either way).
            mask[..., :known] = 0
            masked[..., :known] = torch.randn(1, k, known, device=dev)
            # One guided forward at the window's full shape, counted: it is also the warm-up.
            x = torch.randn(1, k, frames, device=dev, dtype=dtype)
            t = torch.tensor(999, device=dev)
            _, flops = count_flops(
                lambda x=x, t=t, m=mask, z=masked, c=causal: predict_noise(
                    model.unet,
                    x,
                    t,
                    z.to(dtype),
                    m.to(dtype),
                    context,
                    context_mask,
                    causal=c,
                    guidance_scale=guidance,
                )
            )
            # The timed run is the pipeline's own sampler, with n_run of the steps.
            generator = torch.Generator("cpu").manual_seed(settings.seed)
            seconds, _ = clock.time(
                lambda m=mask, z=masked, c=causal, g=generator: sample(
                    model.unet,
                    shape=(1, k, m.shape[-1]),
                    context=context,
                    context_mask=context_mask,
                    masked_latent=z,
                    mask=m,
                    causal=c,
                    scheduler=config.diffusion.scheduler,
                    num_inference_steps=n_run,
                    guidance_scale=guidance,
                    generator=g,
                    diffusion_config=config.diffusion,
                )
            )
            shapes[(frames, causal)] = {
                "frames": frames,
                "causal": causal,
                "steps_run": n_run,
                "seconds": seconds,
                "seconds_per_step": seconds / n_run,
                "flops_per_step": flops,
            }
        window_rows = list(shapes.values())
        measured_s = sum(r["seconds"] for r in window_rows)
        denoise_s = sum(shapes[(f, c)]["seconds_per_step"] * steps for f, _, c in windows)
        unet_flops = sum(shapes[(f, c)]["flops_per_step"] * steps for f, _, c in windows)
        denoise_cpu = clock.take_cpu()

        # Decode: whitener inverse + autoencoder, as Jen1Pipeline.decode runs it.
        dec_samples = round(settings.decode_seconds * sr)
        dec_frames = math.ceil(dec_samples / hop)
        latents = torch.randn(1, k, dec_frames, device=dev)

        def decode() -> torch.Tensor:
            z = model.whitener.inverse(latents)
            return model.autoencoder.decode(z.to(dtype), dec_samples).clamp(-1.0, 1.0)

        _, dec_flops = count_flops(decode, lstm_owner=model.autoencoder)  # also the warm-up
        dec_measured, _ = clock.time(decode)
        dec_cpu = clock.take_cpu()
    scale = n_samples / dec_samples
    result = {
        "label": "JEN-1 (ours, full size)",
        "params": param_counts([text_encoder], [model.unet], [model.autoencoder]),
        "config": {
            "sample_rate": sr,
            "channels": config.autoencoder.audio_channels,
            "latent_frames_per_second": sr / hop,
            "latent_frames": total_frames,
            "windows": [{"frames": f, "known": n, "causal": c} for f, n, c in windows],
            "steps": steps,
            "guidance_scale": guidance,
            "cfg_batch": 2,
            "scheduler": config.diffusion.scheduler,
            "prompt_tokens": PROMPT_TOKENS,
            "text_encoder": "FLAN-T5-large-sized T5 encoder, random weights",
        },
        "build_seconds": build_seconds,
        "stages": {
            "text_encoding": text_stage(
                text_s, text_cpu, secs, settings.text_repeats, PROMPT_TOKENS
            ),
            "denoising": stage(
                denoise_s,
                secs,
                measured_seconds=measured_s,
                measured_units=n_run * len(shapes),
                total_units=steps * len(shapes),
                unit="step",
                measured_cpu_seconds=denoise_cpu,
                method=(
                    f"{n_run} of {steps} guided steps timed per window shape (full sequence "
                    f"length, batch 2), scaled to {steps} steps x {len(windows)} window(s)"
                ),
            ),
            "decoding": stage(
                dec_measured * scale,
                secs,
                measured_seconds=dec_measured,
                measured_units=settings.decode_seconds,
                total_units=secs,
                unit="audio second",
                measured_cpu_seconds=dec_cpu,
                method=f"whitener inverse + decoder on {settings.decode_seconds:g} s, scaled "
                "linearly to the clip",
            ),
        },
        "windows_timed": window_rows,
        "flops": {
            "text_encoder": text_flops,
            "unet_total": unet_flops,
            "decoder": round(dec_flops * scale),
            "decoder_note": "counted on the decoded length, scaled to the clip; LSTM by formula",
        },
        "memory": memory.result(),
    }
    result["flops"]["total"] = text_flops + unet_flops + result["flops"]["decoder"]
    return result
