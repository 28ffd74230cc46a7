"""Stable Audio Open 1.0 through ``diffusers``' own ``StableAudioPipeline``.

The release's DiT, Oobleck VAE (44.1 kHz stereo, 21.5 latent frames/s) and T5-base (prompts
padded to 128 tokens), 100 steps with batched guidance. The pipeline always denoises and decodes
its whole 47.55 s window and crops the request out of it, so that is what is timed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .measure import Clock, MemoryProbe, param_counts, stage, text_stage
from .settings import Settings, random_ids, t5_config, time_text_encoder

SAO_PROMPT_TOKENS = 128  # Stable Audio Open pads every prompt to its tokenizer's 128 tokens
SAO_STEPS = 100  # StableAudioPipeline's default
SAO_GUIDANCE = 7.0  # StableAudioPipeline's default (the cost does not depend on it)


def stable_audio_parts(tiny: bool):
    """(DiT, Oobleck VAE, projection model, T5 config) of stabilityai/stable-audio-open-1.0."""
    from diffusers import AutoencoderOobleck, StableAudioDiTModel
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel

    text = t5_config("t5-base", tiny)
    width = text.d_model
    if tiny:
        dit = StableAudioDiTModel(
            sample_size=32,
            in_channels=64,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            num_key_value_attention_heads=1,
            out_channels=64,
            cross_attention_dim=width,
            time_proj_dim=16,
            global_states_input_dim=2 * width,
            cross_attention_input_dim=width,
        )
        vae = AutoencoderOobleck(encoder_hidden_size=4, decoder_channels=4)
    else:
        dit = StableAudioDiTModel(
            sample_size=1024,  # 1024 x 2048 / 44100 = 47.55 s, the window every call denoises
            in_channels=64,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            num_key_value_attention_heads=12,
            out_channels=64,
            cross_attention_dim=768,
            time_proj_dim=256,
            global_states_input_dim=1536,
            cross_attention_input_dim=768,
        )
        vae = AutoencoderOobleck(  # the defaults, spelled out: 44.1 kHz stereo, hop 2048
            encoder_hidden_size=128,
            downsampling_ratios=[2, 4, 4, 8, 8],
            channel_multiples=[1, 2, 4, 8, 16],
            decoder_channels=128,
            decoder_input_channels=64,
            audio_channels=2,
            sampling_rate=44100,
        )
    projection = StableAudioProjectionModel(
        text_encoder_dim=width, conditioning_dim=width, min_value=0, max_value=512
    )
    return dit, vae, projection, text


def sao_scheduler():
    """The release's scheduler (CosineDPMSolverMultistepScheduler, sigmas 0.3-500, v-prediction).

    That class needs ``torchsde``; without it the EDM DPM-Solver++ with the same sigmas stands in.
    A scheduler step is a few element-wise operations on a [1, 64, 1024] latent, so which one
    runs does not change the timing.
    """
    from diffusers import CosineDPMSolverMultistepScheduler, EDMDPMSolverMultistepScheduler

    kwargs = {"sigma_min": 0.3, "sigma_max": 500.0, "sigma_data": 1.0}
    try:
        return CosineDPMSolverMultistepScheduler(prediction_type="v_prediction", **kwargs)
    except ImportError:
        return EDMDPMSolverMultistepScheduler(
            prediction_type="v_prediction", sigma_schedule="exponential", **kwargs
        )


def bench_stable_audio(settings: Settings, clock: Clock) -> dict[str, Any]:
    """Stable Audio Open through diffusers' own pipeline (prompt embeddings passed in)."""
    from diffusers import StableAudioPipeline
    from diffusers.models.embeddings import get_1d_rotary_pos_embed
    from transformers import T5EncoderModel

    dev, dtype, secs = settings.device, settings.dtype, settings.seconds
    memory = MemoryProbe(dev)
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    with torch.device(dev):
        dit, vae, projection, te_config = stable_audio_parts(settings.tiny)
        text_encoder = T5EncoderModel(te_config).eval()
    scheduler = sao_scheduler()
    pipe = StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection,
        tokenizer=None,  # prompts are passed as embeddings: the tokenizer is a few microseconds
        transformer=dit,
        scheduler=scheduler,
    )
    pipe.to(dev, dtype)
    pipe.set_progress_bar_config(disable=True)
    build_seconds = time.perf_counter() - t0
    memory.start()

    sr = vae.config.sampling_rate
    hop = vae.hop_length
    window_frames = dit.config.sample_size
    window_seconds = window_frames * hop / sr
    if secs > window_seconds + 1e-6:
        return {"skipped": f"Stable Audio Open generates at most {window_seconds:.2f} s"}
    clip_frames = math.ceil(secs * sr / hop)
    n_run = settings.steps(SAO_STEPS)
    generator = torch.Generator(dev).manual_seed(settings.seed)

    with torch.inference_mode():
        ids = random_ids(te_config.vocab_size, SAO_PROMPT_TOKENS, dev)
        text_s, text_cpu, prompt_embeds, _ = time_text_encoder(text_encoder, ids, clock, settings)

        def denoise(steps: int) -> torch.Tensor:
            return pipe(
                prompt_embeds=prompt_embeds,
                attention_mask=torch.ones_like(ids),
                audio_end_in_s=secs,
                num_inference_steps=steps,
                guidance_scale=SAO_GUIDANCE,
                generator=generator,
                output_type="latent",
            ).audios  # [1, 64, window_frames]

        # A direct DiT call (the warm-up on a CPU, and the cost at the clip's own length) needs
        # the rotary position embedding the pipeline builds: frames + 1 for the time token.
        def rotary_for(frames: int) -> tuple[torch.Tensor, ...]:
            parts = get_1d_rotary_pos_embed(
                dit.config.attention_head_dim // 2,
                frames + 1,
                use_real=True,
                repeat_interleave_real=False,
            )
            return tuple(r.to(dev) for r in parts)

        rotary = rotary_for(clip_frames)
        embeds = projection(text_hidden_states=prompt_embeds).text_hidden_states
        width = embeds.shape[-1]
        cross = torch.randn(2, embeds.shape[1] + 2, width, device=dev, dtype=dtype)
        global_states = torch.randn(2, 1, 2 * width, device=dev, dtype=dtype)
        t = torch.tensor([500.0], device=dev)

        def dit_step(frames: int, rot) -> torch.Tensor:
            x = torch.randn(2, dit.config.in_channels, frames, device=dev, dtype=dtype)
            return dit(x, t, cross, global_states, rotary_embedding=rot, return_dict=False)[0]

        # Warm-up: on a GPU the real shape; on a CPU (one step = minutes) a short DiT call.
        if dev.type == "cuda":
            denoise(1)
        else:
            short = min(16, clip_frames)
            dit_step(short, rotary_for(short))
        clock.take_cpu()
        denoise_measured, latents = clock.time(lambda: denoise(n_run))
        denoise_cpu = clock.take_cpu()
        # What the DiT would cost at the clip's own length (the release never runs this way).
        clip_n = max(1, min(n_run, 2))
        if dev.type == "cuda":  # a new shape: let the GPU pick its kernels first
            dit_step(clip_frames, rotary)
        clip_measured = sum(
            clock.time(lambda: dit_step(clip_frames, rotary))[0] for _ in range(clip_n)
        )
        clock.take_cpu()  # not part of any stage

        # Decode: the pipeline decodes the whole window before cropping.
        full = n_run >= SAO_STEPS and settings.decode_seconds >= secs
        dec_frames = window_frames if full else math.ceil(settings.decode_seconds * sr / hop)
        dec_latents = latents[..., :dec_frames].to(dtype)

        def decode() -> torch.Tensor:
            return vae.decode(dec_latents).sample

        decode()  # warm-up
        dec_measured, _ = clock.time(decode)
        dec_cpu = clock.take_cpu()
    dec_total = dec_measured * window_frames / dec_frames
    result = {
        "label": "Stable Audio Open 1.0 (architecture, random weights)",
        "params": param_counts([text_encoder, projection], [dit], [vae]),
        "config": {
            "sample_rate": sr,
            "channels": vae.config.audio_channels,
            "latent_frames_per_second": sr / hop,
            "window_frames": window_frames,
            "window_seconds": window_seconds,
            "clip_frames": clip_frames,
            "steps": SAO_STEPS,
            "guidance_scale": SAO_GUIDANCE,
            "cfg_batch": 2,
            "scheduler": type(scheduler).__name__,
            "prompt_tokens": SAO_PROMPT_TOKENS,
            "text_encoder": "T5-base-sized encoder, random weights",
        },
        "build_seconds": build_seconds,
        "stages": {
            "text_encoding": text_stage(
                text_s, text_cpu, secs, settings.text_repeats, SAO_PROMPT_TOKENS, " (padded)"
            ),
            "denoising": stage(
                denoise_measured / n_run * SAO_STEPS,
                secs,
                measured_seconds=denoise_measured,
                measured_units=n_run,
                total_units=SAO_STEPS,
                unit="step",
                measured_cpu_seconds=denoise_cpu,
                method=(
                    f"StableAudioPipeline, {n_run} of {SAO_STEPS} guided steps on its full "
                    f"{window_frames}-frame ({window_seconds:.2f} s) window"
                    + ("" if n_run >= SAO_STEPS else f", scaled to {SAO_STEPS}")
                ),
            ),
            "decoding": stage(
                dec_total,
                secs,
                measured_seconds=dec_measured,
                measured_units=dec_frames,
                total_units=window_frames,
                unit="latent frame",
                measured_cpu_seconds=dec_cpu,
                method=(
                    f"Oobleck decode of {dec_frames} latent frames"
                    + ("" if full else f", scaled linearly to the {window_frames}-frame window")
                    + " (the pipeline decodes the whole window, then crops)"
                ),
            ),
        },
        "denoising_at_clip_length": {
            "frames": clip_frames,
            "seconds_per_step": clip_measured / clip_n,
            "per_audio_second": clip_measured / clip_n * SAO_STEPS / secs,
            "note": (
                "the DiT's cost if it ran on the clip's own latent length instead of the "
                "window (not how the released pipeline runs); DiT forward only"
            ),
        },
        "memory": memory.result(),
    }
    return result
