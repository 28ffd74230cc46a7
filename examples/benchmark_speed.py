"""Generation speed: full-size JEN-1 against MusicGen (small, medium) and Stable Audio Open.

Every model is built from its published configuration with random weights (nothing is
downloaded: speed does not depend on the weights' values), one at a time in this one process, and
run on the same seconds of audio. Per model and per stage (text encoding, denoising or token
generation, decoding) it reports seconds of compute per second of audio, the peak memory and the
parameter counts; the headline is ours ÷ each peer (compute seconds per audio second, below 1 =
ours is faster). It also counts the FLOPs of one of our generations and compares the achieved
FLOP/s with the machine's measured matmul throughput (the "physical limit").

- **jen1** (ours): ``presets.full_config()`` (743 M U-Net) + a FLAN-T5-large-sized encoder, 50
  DPM-Solver++ steps with classifier-free guidance batched into one batch-2 forward, whitener
  inverse, autoencoder decode. Past the 10 s window the pipeline rolls out windows; so does this.
- **musicgen-small / -medium**: ``transformers``' ``MusicgenForConditionalGeneration`` with T5-base,
  EnCodec 32 kHz (4 codebooks of 2048, 50 frames/s) and the 300 M / 1.5 B decoder: 50 tokens/s
  (+3 for the delay pattern) decoder steps at batch 2 (guidance 3) with a KV cache, top-k 250
  sampling, EnCodec decode.
- **stable-audio-open**: ``diffusers``' ``StableAudioPipeline`` with the 1.0 release's DiT,
  Oobleck VAE (44.1 kHz stereo, 21.5 latent frames/s) and T5-base (prompts padded to 128 tokens),
  100 steps with batched guidance. The pipeline always denoises and decodes its whole 47.55 s
  window and crops the request out of it, so that is what is timed; the JSON also gives the DiT's
  cost at the clip's own length.

On a GPU (``--device cuda``, bf16 by default) every generation runs in full. On a CPU that takes
hours, so by default a few steps are timed AT the full clip's sequence length and scaled by the
step count (``--steps-timed``); MusicGen's per-token cost grows with the KV cache, so tokens
(``--tokens-timed``) are timed at the start, middle and end of the sequence (the cache filled with
random keys and values) and the cost is integrated over all positions; decoders are timed on
``--decode-seconds`` of audio and scaled linearly (they are convolutional and recurrent, so linear
in length). Every extrapolated figure is flagged in the table and the JSON. A CPU run that would
be too long for one sitting can be split: ``--only`` some models, then ``--merge`` the earlier
JSON into the next run. Examples:

    python examples/benchmark_speed.py --seconds 10 --steps-timed 2 --out bench.json
    python examples/benchmark_speed.py --only stable-audio-open --steps-timed 1 \\
        --merge bench.json --out bench-all.json
    python examples/benchmark_speed.py --device cuda --dtype bf16 --seconds 10
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from jen1cli.pipeline import Jen1Pipeline

MODELS = ("jen1", "musicgen-small", "musicgen-medium", "stable-audio-open")
OURS = "jen1"
DTYPES = Jen1Pipeline.UNET_DTYPES  # the names `jen1 generate --dtype` takes
PROMPT_TOKENS = 32  # a typical prompt ("a mellow piano ballad in D minor, 72 bpm, ...")
MUSICGEN_GUIDANCE = 3.0
MUSICGEN_TOP_K = 250  # MusicGen's released generation config samples with top-k 250
MUSICGEN_DELAY = 3  # the delay pattern adds num_codebooks - 1 steps
SAO_PROMPT_TOKENS = 128  # Stable Audio Open pads every prompt to its tokenizer's 128 tokens
SAO_STEPS = 100  # StableAudioPipeline's default
SAO_GUIDANCE = 7.0  # StableAudioPipeline's default (the cost does not depend on it)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


# --- measuring -------------------------------------------------------------------------------


class Clock:
    """Wall-clock timing that waits for the device, so asynchronous CUDA work is counted.

    It also adds up the process's CPU time (all threads) over the timed calls: on a CPU shared
    with other work, wall time grows with the contention while CPU time mostly does not, so
    ``cpu / wall`` (about the thread count when the machine is ours alone) shows how clean a
    measurement was.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cpu = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """(seconds, result) of one call."""
        self.sync()
        cpu = time.process_time()
        start = time.perf_counter()
        out = fn()
        self.sync()
        wall = time.perf_counter() - start
        self._cpu += time.process_time() - cpu
        return wall, out

    def median(self, fn: Callable[[], Any], repeats: int) -> float:
        """Median seconds over ``repeats`` calls (cheap stages, where noise matters)."""
        return statistics.median(self.time(fn)[0] for _ in range(repeats))

    def take_cpu(self) -> float:
        """CPU seconds of the calls timed since the last ``take_cpu`` (warm-ups: discard it)."""
        cpu, self._cpu = self._cpu, 0.0
        return cpu


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM), so each model gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak memory of one model's generation (weights resident + activations).

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process's RSS high-water mark (VmHWM), which
    is process-wide, so it is reset (``/proc/self/clear_refs``) once the model is built and the
    resident size before the model was built is reported beside it, to be subtracted.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_before_build_kb = _proc_status_kb("VmRSS")
        self.reset_ok = False

    def start(self) -> None:
        """Call once the model is built and cast: build-time transients are not counted."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.reset_ok = _reset_rss_peak()
        self.rss_after_build_kb = _proc_status_kb("VmRSS")

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        hwm = _proc_status_kb("VmHWM")
        if hwm is not None and self.rss_before_build_kb is not None:
            out["cpu_rss_peak_bytes"] = hwm * 1024
            out["cpu_rss_before_build_bytes"] = self.rss_before_build_kb * 1024
            out["cpu_rss_after_build_bytes"] = self.rss_after_build_kb * 1024
            out["cpu_rss_peak_minus_before_build_bytes"] = (hwm - self.rss_before_build_kb) * 1024
            out["cpu_rss_peak_reset"] = self.reset_ok
            out["cpu_note"] = (
                "process-wide VmHWM, reset after the model was built"
                if self.reset_ok
                else "process-wide VmHWM, could not be reset: includes earlier models' peaks"
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
        return out


def params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def param_counts(text_encoder: list, generator: list, autoencoder: list) -> dict[str, int]:
    """Parameters per part (each a list of modules; None counts 0) and their total."""
    counts = {
        "text_encoder": sum(params(m) for m in text_encoder),
        "generator": sum(params(m) for m in generator),
        "autoencoder": sum(params(m) for m in autoencoder),
    }
    return {**counts, "total": sum(counts.values())}


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_flop_formulas() -> dict[Any, Callable]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one: count it the same."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _sdpa_flops}


def count_flops(fn: Callable[[], Any], lstm_owner: nn.Module | None = None) -> tuple[Any, int]:
    """(result, FLOPs) of one call; FlopCounterMode skips LSTMs, so theirs are added by hook."""
    extra = [0]
    hooks = []
    if lstm_owner is not None:
        for m in lstm_owner.modules():
            if isinstance(m, nn.LSTM):
                hooks.append(m.register_forward_hook(_lstm_flop_hook(extra)))
    try:
        # Outside inference mode: FlopCounterMode cannot run weight-norm parametrizations there.
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as counter,
        ):
            out = fn()
    finally:
        for h in hooks:
            h.remove()
    return out, int(counter.get_total_flops()) + extra[0]


def _lstm_flop_hook(total: list[int]) -> Callable:
    def hook(module: nn.LSTM, inputs: tuple, _output: Any) -> None:
        x = inputs[0]  # [T, B, C] (batch_first=False, as our autoencoder calls it)
        steps, batch = x.shape[0], x.shape[1]
        h = module.hidden_size
        flops = 0
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else h
            flops += 2 * 4 * h * (width + h)  # four gates, a multiply-add per weight
        total[0] += flops * steps * batch

    return hook


def stage(
    total_seconds: float,
    audio_seconds: float,
    *,
    measured_seconds: float,
    measured_units: float,
    total_units: float,
    unit: str,
    method: str,
    measured_cpu_seconds: float,
) -> dict[str, Any]:
    """One stage's figures for the whole clip; ``extrapolated`` when fewer units ran than needed.

    CPU seconds are scaled to the clip like the wall time.
    """
    cpu = measured_cpu_seconds * total_seconds / measured_seconds if measured_seconds else 0.0
    return {
        "seconds": total_seconds,
        "per_audio_second": total_seconds / audio_seconds,
        "extrapolated": measured_units < total_units,
        "cpu_seconds": cpu,
        "cpu_per_audio_second": cpu / audio_seconds,
        "cpu_over_wall": measured_cpu_seconds / measured_seconds if measured_seconds else None,
        "measured_seconds": measured_seconds,
        "measured_cpu_seconds": measured_cpu_seconds,
        "measured_units": measured_units,
        "total_units": total_units,
        "unit": unit,
        "method": method,
    }


def text_stage(
    seconds: float,
    cpu_seconds: float,
    audio_seconds: float,
    repeats: int,
    tokens: int,
    note: str = "",
) -> dict[str, Any]:
    """The text-encoding stage: one prompt, timed whole (never extrapolated)."""
    return stage(
        seconds,
        audio_seconds,
        measured_seconds=seconds,
        measured_units=1,
        total_units=1,
        unit="prompt",
        measured_cpu_seconds=cpu_seconds,
        method=f"median of {repeats} encodings of {tokens} tokens{note}",
    )


def release_memory() -> None:
    """Return a finished model's memory (its last references died with its runner), so the next
    model starts from a clean process."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- settings --------------------------------------------------------------------------------


def _timed(limit: int | None, total: int) -> int:
    """All ``total`` units (limit None), else ``limit`` of them, at least 1."""
    return total if limit is None else max(1, min(limit, total))


class Settings:
    """What to run: resolved from the command line once, shared by every model."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.seconds: float = args.seconds
        self.device = torch.device(args.device)
        self.dtype: torch.dtype = DTYPES[args.dtype]
        self.tiny: bool = args.tiny
        self.seed: int = args.seed
        on_gpu = self.device.type == "cuda"
        # None = everything (the real generation); a CPU would take hours, so a few by default.
        self.steps_timed: int | None = args.steps_timed
        if self.steps_timed is None and not on_gpu:
            self.steps_timed = 2
        # Tokens are ~100x cheaper than diffusion steps: time more of them for a steadier mean.
        self.tokens_timed: int | None = args.tokens_timed
        if self.tokens_timed is None and not on_gpu:
            self.tokens_timed = 8
        decode = args.decode_seconds
        if decode is None and not on_gpu:
            decode = 2.0
        self.decode_seconds: float = self.seconds if decode is None else min(decode, self.seconds)
        self.text_repeats = 3

    def steps(self, total: int) -> int:
        """How many of ``total`` diffusion steps to run."""
        return _timed(self.steps_timed, total)

    def tokens(self, total: int) -> int:
        """How many of ``total`` MusicGen tokens to time at each probed cache length."""
        return _timed(self.tokens_timed, total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "tiny": self.tiny,
            "steps_timed": self.steps_timed,
            "tokens_timed": self.tokens_timed,
            "decode_seconds": self.decode_seconds,
            "text_encoding_repeats": self.text_repeats,
            "seed": self.seed,
        }


def random_ids(vocab: int, length: int, device: torch.device) -> torch.Tensor:
    """Token ids of one prompt: the encoders' cost depends on the length, not on the words."""
    return torch.randint(2, vocab, (1, length), device=device)


def t5_config(size: str, tiny: bool):
    """T5 encoder configs: FLAN-T5-large (ours) and T5-base (MusicGen, Stable Audio Open)."""
    from transformers import T5Config

    if tiny:
        width = {"flan-t5-large": 16, "t5-base": 32}[size]
        return T5Config(
            vocab_size=256, d_model=width, d_kv=8, d_ff=2 * width, num_layers=1, num_heads=2
        )
    if size == "flan-t5-large":
        return T5Config(
            vocab_size=32128,
            d_model=1024,
            d_kv=64,
            d_ff=2816,
            num_layers=24,
            num_heads=16,
            feed_forward_proj="gated-gelu",
        )
    return T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_heads=12,
        feed_forward_proj="relu",
    )


def time_text_encoder(
    encoder: nn.Module, ids: torch.Tensor, clock: Clock, settings: Settings, count: bool = False
) -> tuple[float, float, torch.Tensor, int | None]:
    """(median seconds, mean CPU seconds, states, FLOPs) of one prompt through a T5 encoder."""
    mask = torch.ones_like(ids)

    def run() -> torch.Tensor:
        return encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    if count:
        states, flops = count_flops(run)
    else:
        states, flops = run(), None
    clock.take_cpu()
    seconds = clock.median(run, settings.text_repeats)
    return seconds, clock.take_cpu() / settings.text_repeats, states, flops


# --- ours ------------------------------------------------------------------------------------


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
    if settings.tiny:  # tiny networks, but the full model's window and sampling (50 steps)
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


# --- MusicGen --------------------------------------------------------------------------------


def musicgen_config(size: str, tiny: bool):
    """MusicGen small / medium: T5-base, EnCodec 32 kHz (4 x 2048 codes, 50 Hz), the decoder."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig

    # facebook/encodec_32khz, as transformers' EnCodec conversion script sets it up.
    encodec = EncodecConfig(
        sampling_rate=32_000,
        audio_channels=1,
        num_filters=4 if tiny else 64,
        upsampling_ratios=[8, 5, 4, 4],  # hop 640 -> 50 frames/s
        target_bandwidths=[2.2],  # -> 4 codebooks
        codebook_size=2048,
        use_causal_conv=False,
        normalize=False,
        use_conv_shortcut=False,
        num_lstm_layers=2,
    )
    sizes = {
        "small": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
        "medium": {"hidden_size": 1536, "num_hidden_layers": 48, "num_attention_heads": 24},
        "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
    }["tiny" if tiny else size]
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        max_position_embeddings=2048,
        ffn_dim=4 * sizes["hidden_size"],
        num_codebooks=4,
        pad_token_id=2048,
        bos_token_id=2048,
        dropout=0.0,
        **sizes,
    )
    return MusicgenConfig(
        text_encoder=t5_config("t5-base", tiny), audio_encoder=encodec, decoder=decoder
    )


def _musicgen_cache(model, position: int, batch: int, device, dtype):
    """A KV cache holding ``position`` random past tokens per layer (what generation would hold)."""
    from transformers import DynamicCache, EncoderDecoderCache

    dec = model.decoder.config
    heads = dec.num_attention_heads
    head_dim = dec.hidden_size // heads
    past = None
    if position > 0:
        past = [
            (
                torch.randn(batch, heads, position, head_dim, device=device, dtype=dtype),
                torch.randn(batch, heads, position, head_dim, device=device, dtype=dtype),
            )
            for _ in range(dec.num_hidden_layers)
        ]
    return EncoderDecoderCache(DynamicCache(past, config=dec), DynamicCache(config=dec))


def _musicgen_steps(model, cache, enc_states, enc_mask, n: int, generator) -> torch.Tensor:
    """``n`` guided decoder steps from ``cache``: batch 2 (text, null), CFG on logits, top-k."""
    codebooks = model.decoder.num_codebooks
    ids = torch.full((2 * codebooks, 1), 2048, dtype=torch.long, device=enc_states.device)
    outs = []
    for _ in range(n):
        logits = model(
            encoder_outputs=(enc_states,),
            attention_mask=enc_mask,
            decoder_input_ids=ids,
            cache=cache,
            use_cache=True,
        ).logits[:, -1]  # [2 * codebooks, vocab]
        cond, uncond = logits.float().chunk(2)
        scores = uncond + MUSICGEN_GUIDANCE * (cond - uncond)
        top = torch.topk(scores, min(MUSICGEN_TOP_K, scores.shape[-1]))
        probs = torch.softmax(top.values, dim=-1)
        choice = torch.multinomial(probs, 1, generator=generator)
        nxt = top.indices.gather(-1, choice)  # [codebooks, 1]
        ids = nxt.repeat(2, 1)
        outs.append(nxt)
    return torch.cat(outs, dim=-1)


def _integrate(positions: list[float], costs: list[float], n: int) -> float:
    """Σ over positions 0..n-1 of the per-token cost, linear between the probed positions."""
    total = 0.0
    for p in range(n):
        if p <= positions[0]:
            total += costs[0]
        elif p >= positions[-1]:
            total += costs[-1]
        else:
            i = next(j for j in range(1, len(positions)) if positions[j] >= p)
            w = (p - positions[i - 1]) / (positions[i] - positions[i - 1])
            total += costs[i - 1] + w * (costs[i] - costs[i - 1])
    return total


def bench_musicgen(size: str, settings: Settings, clock: Clock) -> dict[str, Any]:
    """MusicGen: text encoding, autoregressive guided token generation, EnCodec decode."""
    from transformers import MusicgenForConditionalGeneration

    dev, dtype, secs = settings.device, settings.dtype, settings.seconds
    config = musicgen_config(size, settings.tiny)
    frame_rate = config.audio_encoder.frame_rate
    n_tokens = round(secs * frame_rate) + MUSICGEN_DELAY
    if n_tokens > config.decoder.max_position_embeddings:
        limit = config.decoder.max_position_embeddings
        return {"skipped": f"{n_tokens} tokens exceed MusicGen's {limit} positions (~40 s)"}
    memory = MemoryProbe(dev)
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = MusicgenForConditionalGeneration(config).eval()
    model.to(dtype)
    build_seconds = time.perf_counter() - t0
    memory.start()
    generator = torch.Generator(dev).manual_seed(settings.seed)

    with torch.inference_mode():
        ids = random_ids(config.text_encoder.vocab_size, PROMPT_TOKENS, dev)
        text_s, text_cpu, states, _ = time_text_encoder(model.text_encoder, ids, clock, settings)
        # MusicGen's CFG: the null condition is zeroed states with a zero attention mask.
        enc_states = torch.cat([states, torch.zeros_like(states)])
        enc_mask = torch.cat([torch.ones_like(ids), torch.zeros_like(ids)])

        n_run = settings.tokens(n_tokens)
        probes = []
        clock.take_cpu()
        if n_run >= n_tokens:  # the real thing: every token from an empty cache
            warm = _musicgen_cache(model, 0, 2, dev, dtype)
            _musicgen_steps(model, warm, enc_states, enc_mask, 2, generator)
            del warm
            cache = _musicgen_cache(model, 0, 2, dev, dtype)
            gen_s, _ = clock.time(
                lambda: _musicgen_steps(model, cache, enc_states, enc_mask, n_tokens, generator)
            )
            measured_s, measured_n = gen_s, n_tokens
            method = f"all {n_tokens} tokens generated with a KV cache"
        else:
            # The cost per token grows with the cache: probe the start, middle and end.
            starts = sorted({0, (n_tokens - n_run) // 2, n_tokens - n_run - 1})  # all >= 0 here
            measured_s = 0.0
            for start in starts:
                cache = _musicgen_cache(model, start, 2, dev, dtype)
                # The first step also fills the cross-attention cache, as generation's first does.
                _musicgen_steps(model, cache, enc_states, enc_mask, 1, generator)
                seconds, _ = clock.time(
                    lambda c=cache: _musicgen_steps(
                        model, c, enc_states, enc_mask, n_run, generator
                    )
                )
                measured_s += seconds
                # Position of the timed tokens' middle; their mean cost stands for it.
                probes.append(
                    {
                        "position": start + 1 + (n_run - 1) / 2,
                        "tokens": n_run,
                        "seconds_per_token": seconds / n_run,
                    }
                )
                del cache
            gen_s = _integrate(
                [p["position"] for p in probes], [p["seconds_per_token"] for p in probes], n_tokens
            )
            measured_n = n_run * len(probes)
            method = (
                f"{n_run} tokens timed at each of {len(probes)} cache lengths "
                f"({', '.join(str(round(p['position'])) for p in probes)}; random keys/values), "
                f"cost integrated linearly over all {n_tokens} positions"
            )

        gen_cpu = clock.take_cpu()

        # Decode: EnCodec turns the codes of the decoded length into audio.
        dec_frames = max(1, round(settings.decode_seconds * frame_rate))
        codes = torch.randint(0, 2048, (1, 1, config.decoder.num_codebooks, dec_frames), device=dev)

        def decode() -> torch.Tensor:
            return model.audio_encoder.decode(codes, audio_scales=[None]).audio_values

        decode()  # warm-up
        dec_measured, _ = clock.time(decode)
        dec_cpu = clock.take_cpu()
    audio_frames = round(secs * frame_rate)
    result = {
        "label": f"MusicGen {size} (architecture, random weights)",
        "params": param_counts(
            [model.text_encoder],
            [model.decoder, getattr(model, "enc_to_dec_proj", None)],
            [model.audio_encoder],
        ),
        "config": {
            "sample_rate": config.audio_encoder.sampling_rate,
            "channels": 1,
            "tokens_per_second": frame_rate,
            "tokens": n_tokens,
            "codebooks": config.decoder.num_codebooks,
            "guidance_scale": MUSICGEN_GUIDANCE,
            "cfg_batch": 2,
            "top_k": MUSICGEN_TOP_K,
            "prompt_tokens": PROMPT_TOKENS,
            "text_encoder": "T5-base-sized encoder, random weights",
        },
        "build_seconds": build_seconds,
        "stages": {
            "text_encoding": text_stage(
                text_s, text_cpu, secs, settings.text_repeats, PROMPT_TOKENS
            ),
            "denoising": stage(
                gen_s,
                secs,
                measured_seconds=measured_s,
                measured_units=measured_n,
                total_units=n_tokens,
                unit="token",
                measured_cpu_seconds=gen_cpu,
                method=method,
            ),
            "decoding": stage(
                dec_measured * audio_frames / dec_frames,
                secs,
                measured_seconds=dec_measured,
                measured_units=dec_frames / frame_rate,
                total_units=secs,
                unit="audio second",
                measured_cpu_seconds=dec_cpu,
                method=f"EnCodec decode of {dec_frames} frames, scaled linearly to the clip",
            ),
        },
        "token_probes": probes,
        "memory": memory.result(),
    }
    return result


# --- Stable Audio Open -----------------------------------------------------------------------


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


# --- the machine -----------------------------------------------------------------------------


def matmul_peak(device: torch.device, dtype: torch.dtype, tiny: bool) -> dict[str, Any]:
    """Measured throughput of one large square matmul: the machine's practical FLOP/s ceiling."""
    n = 1024 if tiny else (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    clock = Clock(device)
    clock.time(lambda: a @ b)  # warm-up
    seconds, reps = 0.0, 0
    while reps < 3 or seconds < (0.2 if tiny else 2.0):
        s, _ = clock.time(lambda: a @ b)
        seconds += s
        reps += 1
    flops = 2 * n**3 * reps
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": reps,
        "seconds": seconds,
        "flops_per_second": flops / seconds,
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    import diffusers
    import transformers

    import jen1cli

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "memory_total_bytes": _meminfo_total(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
            "jen1cli": jen1cli.__version__,
        },
    }
    return info


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return int(next(x for x in f if x.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        return None


# --- report ----------------------------------------------------------------------------------


def physical_limit(ours: dict[str, Any], peak: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Our generation's FLOPs against the measured matmul ceiling."""
    flops = ours["flops"]["total"]
    gen_seconds = sum(s["seconds"] for s in ours["stages"].values())
    den = ours["stages"]["denoising"]
    achieved = flops / gen_seconds
    return {
        "generation_flops": flops,
        "flops_breakdown": ours["flops"],
        "generation_seconds": gen_seconds,
        "generation_seconds_extrapolated": any(s["extrapolated"] for s in ours["stages"].values()),
        "achieved_flops_per_second": achieved,
        "matmul_flops_per_second": peak["flops_per_second"],
        "fraction_of_matmul_peak": achieved / peak["flops_per_second"],
        "denoising_fraction_of_matmul_peak": (
            ours["flops"]["unet_total"] / den["seconds"] / peak["flops_per_second"]
        ),
        "seconds_per_audio_second_at_peak": flops / peak["flops_per_second"] / seconds,
    }


def total_per_second(model: dict[str, Any], key: str = "per_audio_second") -> float:
    return sum(s[key] for s in model["stages"].values())


def headline(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ours ÷ each peer, in total compute seconds per audio second (below 1 = ours is faster).

    The wall-time ratio is the headline; the CPU-time one (all threads) is less sensitive to other
    work sharing the machine.
    """
    ours = models.get(OURS)
    if not ours or "stages" not in ours:
        return {}
    mine, mine_cpu = total_per_second(ours), total_per_second(ours, "cpu_per_audio_second")
    out = {}
    for name, m in models.items():
        if name == OURS or "stages" not in m:
            continue
        theirs, theirs_cpu = total_per_second(m), total_per_second(m, "cpu_per_audio_second")
        out[name] = {
            "ours_over_peer": mine / theirs,
            "peer_over_ours": theirs / mine,
            "ours_per_audio_second": mine,
            "peer_per_audio_second": theirs,
            "ours_over_peer_cpu_time": mine_cpu / theirs_cpu if theirs_cpu else None,
            "extrapolated": any(
                st["extrapolated"] for x in (ours, m) for st in x["stages"].values()
            ),
        }
    return out


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:.2f} GB"


def _si(x: float, unit: str) -> str:
    """1.23e12 -> '1.23 TFLOP'."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def peak_memory(model: dict[str, Any]) -> int | None:
    mem = model["memory"]
    return mem.get("cuda_max_allocated_bytes", mem.get("cpu_rss_peak_minus_before_build_bytes"))


def format_table(report: dict[str, Any]) -> str:
    """The human-readable summary printed to stdout."""
    s, m = report["settings"], report["machine"]
    on_cpu = not s["device"].startswith("cuda")
    where = m["gpu"] or f"{m['cpu']}, {m['torch_threads']} torch threads"
    lines = [
        f"Generation speed for {s['seconds']:g} s of audio on {s['device']} ({where}), "
        f"{s['dtype']}{', TINY configs' if s['tiny'] else ''}",
        "seconds of compute per second of audio; * = extrapolated from timed steps / tokens / "
        "decoded seconds (each stage's 'method' in the JSON says how)",
        "",
    ]
    head = (
        f"{'model':<19}{'params':>8}{'text enc':>11}{'denoise/gen':>13}{'decode':>10}"
        f"{'total':>10}{'ours/peer':>11}"
    )
    if on_cpu:
        head += f"{'cpu total':>11}{'cpu/wall':>9}"
    head += f"{'peak mem':>11}"
    lines += [head, "-" * len(head)]
    ratios = report["headline"]
    for name, r in report["models"].items():
        if "stages" not in r:
            lines.append(f"{name:<19} skipped: {r.get('skipped', r.get('error'))}")
            continue
        cells = []
        for key in ("text_encoding", "denoising", "decoding"):
            st = r["stages"][key]
            cells.append(f"{st['per_audio_second']:.4g}{'*' if st['extrapolated'] else ' '}")
        star = "*" if any(st["extrapolated"] for st in r["stages"].values()) else " "
        total = f"{total_per_second(r):.4g}{star}"
        ratio = f"{ratios[name]['ours_over_peer']:.3f}" if name in ratios else "-"
        name_cell = name + (" (m)" if "merged_from" in r else "")
        row = (
            f"{name_cell:<19}{r['params']['total'] / 1e6:>7.0f}M{cells[0]:>11}{cells[1]:>13}"
            f"{cells[2]:>10}{total:>10}{ratio:>11}"
        )
        if on_cpu:
            den = r["stages"]["denoising"]
            cpu_total = f"{total_per_second(r, 'cpu_per_audio_second'):.4g}{star}"
            ratio_cpu = den["cpu_over_wall"]
            row += f"{cpu_total:>11}{'n/a' if ratio_cpu is None else f'{ratio_cpu:.2f}':>9}"
        lines.append(row + f"{_gb(peak_memory(r)):>11}")
    lines.append("")
    notes = [
        "params: text encoder + generator (U-Net / LM decoder / DiT) + autoencoder, in millions.",
        "peak mem: "
        + (
            "process RSS high-water mark (reset after each build) minus RSS before the build."
            if on_cpu
            else "torch.cuda.max_memory_allocated during generation (weights included)."
        ),
    ]
    if on_cpu:
        load = [
            x[0] if x else float("nan")
            for x in (m.get("load_average_start"), report.get("load_average_end"))
        ]
        notes.append(
            "cpu total: process CPU seconds (all threads) per audio second; cpu/wall during "
            f"denoising is ~{m['torch_threads']} when nothing else competes for the cores "
            f"(1-min load average: {load[0]:.2f} at the start, {load[1]:.2f} at the end)."
        )
        busy = [
            f"{name} ({r['stages']['denoising']['cpu_over_wall']:.2f})"
            for name, r in report["models"].items()
            if "stages" in r
            and (r["stages"]["denoising"]["cpu_over_wall"] or 0) < 0.75 * m["torch_threads"]
        ]
        if busy:
            notes.append(
                "WARNING: other work shared the cores while timing "
                + ", ".join(busy)
                + ": cpu/wall well under the thread count, so those wall times are inflated."
            )
    if any("merged_from" in r for r in report["models"].values()):
        notes.append("(m) = measured in an earlier run on this machine (--merge).")
    lines += notes
    for name, r in report["models"].items():
        if "stages" in r:
            p = r["params"]
            lines.append(
                f"  {name}: text {p['text_encoder'] / 1e6:.1f} M, generator "
                f"{p['generator'] / 1e6:.1f} M, autoencoder {p['autoencoder'] / 1e6:.1f} M"
            )
    sao = report["models"].get("stable-audio-open", {})
    if "denoising_at_clip_length" in sao:
        c = sao["denoising_at_clip_length"]
        lines.append(
            f"stable-audio-open denoises its whole {sao['config']['window_seconds']:.2f} s window "
            f"for any request; at the clip's own {c['frames']} latent frames its DiT would cost "
            f"{c['per_audio_second']:.4g} s per audio second instead of "
            f"{sao['stages']['denoising']['per_audio_second']:.4g}."
        )
    if ratios:
        lines.append("")
    for name, h in ratios.items():
        faster = h["ours_over_peer"] < 1
        factor = h["peer_over_ours"] if faster else h["ours_over_peer"]
        cpu = h["ours_over_peer_cpu_time"]
        lines.append(
            f"ours vs {name}: ours/peer = {h['ours_over_peer']:.3f} -> ours is {factor:.2f}x "
            f"{'faster' if faster else 'slower'}"
            + (f" (by CPU time: ours/peer = {cpu:.3f})" if on_cpu and cpu else "")
            + (" [extrapolated]" if h["extrapolated"] else "")
        )
    lim = report.get("physical_limit")
    if lim:
        pk = report["models"][OURS].get("matmul_peak", report["matmul_peak"])
        fl = lim["flops_breakdown"]
        lines += [
            "",
            f"physical limit: one {s['seconds']:g} s JEN-1 generation = "
            f"{_si(lim['generation_flops'], 'FLOP')} (U-Net {_si(fl['unet_total'], 'FLOP')}, "
            f"text encoder {_si(fl['text_encoder'], 'FLOP')}, "
            f"decoder {_si(fl['decoder'], 'FLOP')})",
            f"  measured matmul ({pk['n']}x{pk['n']}, {pk['dtype']}): "
            f"{_si(pk['flops_per_second'], 'FLOP/s')}; our generation achieves "
            f"{_si(lim['achieved_flops_per_second'], 'FLOP/s')} = "
            f"{100 * lim['fraction_of_matmul_peak']:.1f} % of it (denoising alone "
            f"{100 * lim['denoising_fraction_of_matmul_peak']:.1f} %)"
            + (" [extrapolated times]" if lim["generation_seconds_extrapolated"] else ""),
            f"  at that matmul rate a generation would take "
            f"{lim['seconds_per_audio_second_at_peak']:.4g} s per audio second",
        ]
    return "\n".join(lines)


def merge_earlier(report: dict[str, Any], path: Path, running: list[str]) -> None:
    """Copy the models of an earlier report (same machine and settings) that this run skips.

    On a small CPU one process may not have time for every model; this lets the runs be split
    while the ratios still come out in one report.
    """
    earlier = json.loads(path.read_text())
    # How many steps were timed may differ (each model's 'method' says); what is measured may not.
    keys = ("seconds", "device", "dtype", "tiny")
    diff = [k for k in keys if earlier["settings"].get(k) != report["settings"].get(k)]
    if earlier["machine"].get("cpu") != report["machine"]["cpu"]:
        diff.append("machine cpu")
    if earlier["machine"].get("gpu") != report["machine"]["gpu"]:
        diff.append("machine gpu")
    if diff:
        raise SystemExit(f"--merge {path}: different {', '.join(diff)}; rerun instead")
    for name, result in earlier["models"].items():
        if name not in running and name not in report["models"]:
            report["models"][name] = {"merged_from": str(path), **result}  # keep the first
    report["merged_from"] = str(path)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio to generate (seconds)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        help="weights and activations (default: cuda bf16, cpu fp32)",
    )
    p.add_argument(
        "--steps-timed",
        type=int,
        help="diffusion steps to time per model (at the full sequence length) and scale to the "
        "full count; default: all on cuda, 2 on cpu",
    )
    p.add_argument(
        "--tokens-timed",
        type=int,
        help="MusicGen tokens to time at each of 3 cache lengths; default: all on cuda, 8 on cpu",
    )
    p.add_argument(
        "--decode-seconds",
        type=float,
        help="audio to decode, scaled linearly to the clip; default: all on cuda, 2 on cpu",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="MODEL",
        help=f"models to run, repeatable or comma-separated ({', '.join(MODELS)}); default all",
    )
    p.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="take the models this run skips from an earlier report of the same machine and "
        "settings (to split a long CPU benchmark over several runs)",
    )
    p.add_argument("--tiny", action="store_true", help="tiny configs (a smoke test in seconds)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmark_speed.json"), help="JSON report")
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.steps_timed is not None and args.steps_timed < 1:
        p.error("--steps-timed must be >= 1")
    if args.tokens_timed is not None and args.tokens_timed < 1:
        p.error("--tokens-timed must be >= 1")
    if args.decode_seconds is not None and args.decode_seconds <= 0:
        p.error("--decode-seconds must be positive")
    selected = [x.strip() for arg in (args.only or MODELS) for x in arg.split(",") if x.strip()]
    unknown = sorted(set(selected) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.only = [m for m in MODELS if m in selected]
    return args


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Random-weight builds make transformers and diffusers chatty; the table is what matters."""
    import warnings

    from diffusers.utils import logging as df_logging
    from transformers.utils import logging as hf_logging

    levels = hf_logging.get_verbosity(), df_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    df_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Oobleck's old-style weight_norm
            yield
    finally:
        hf_logging.set_verbosity(levels[0])
        df_logging.set_verbosity(levels[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(args)
    if settings.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but CUDA is not available")
    clock = Clock(settings.device)
    report: dict[str, Any] = {
        "machine": machine_info(settings.device),
        "settings": settings.to_dict(),
        "models": {},
    }
    report["machine"]["load_average_start"] = _loadavg()
    # The peak in the precision the models run in (bf16 matmuls are about 2x fp32 on CPUs with
    # AVX512-BF16/AMX); fp16 has no fast CPU kernels, so a CPU fp16 run is held to fp32's peak.
    cpu_fp16 = settings.device.type == "cpu" and settings.dtype == torch.float16
    peak_dtype = torch.float32 if cpu_fp16 else settings.dtype
    log(f"matmul peak ({str(peak_dtype).removeprefix('torch.')}) ...")
    report["matmul_peak"] = matmul_peak(settings.device, peak_dtype, settings.tiny)
    runners = {
        "jen1": lambda: bench_jen1(settings, clock),
        "musicgen-small": lambda: bench_musicgen("small", settings, clock),
        "musicgen-medium": lambda: bench_musicgen("medium", settings, clock),
        "stable-audio-open": lambda: bench_stable_audio(settings, clock),
    }
    with _quiet_libraries():
        for name in args.only:
            log(f"{name} ...")
            t0, load = time.perf_counter(), _loadavg()
            failed = False
            try:
                result = runners[name]()
            except Exception as error:  # one model's failure must not lose the others' figures
                import traceback

                log(traceback.format_exc())
                result = {"skipped": f"failed: {type(error).__name__}: {error}"}
                failed = True
                report.setdefault("failed", []).append(name)
            # out here the runner's frames, a failed one's traceback included, are gone
            release_memory()
            result["load_average"] = {"before": load, "after": _loadavg()}
            result["wall_seconds_in_benchmark"] = time.perf_counter() - t0
            result["settings"] = settings.to_dict()
            # The ceiling measured in the same process, so a merged model keeps its own.
            result["matmul_peak"] = report["matmul_peak"]
            report["models"][name] = result
            log(f"{name}: {'failed' if failed else 'done'} in {time.perf_counter() - t0:.1f} s")
    report["load_average_end"] = _loadavg()
    if args.merge:
        merge_earlier(report, args.merge, args.only)
        report["models"] = {n: report["models"][n] for n in MODELS if n in report["models"]}
    report["headline"] = headline(report["models"])
    ours = report["models"].get(OURS)
    if ours and "stages" in ours:
        peak = ours.get("matmul_peak", report["matmul_peak"])
        report["physical_limit"] = physical_limit(ours, peak, settings.seconds)
    report["notes"] = [
        "All models are built from their configurations with random weights; speed does not "
        "depend on the weights' values.",
        "Stages marked extrapolated were timed on fewer steps / tokens / seconds than a full "
        "generation needs and scaled (see each stage's 'method').",
        "ours_over_peer < 1 means ours needs less compute time per second of audio.",
        "Peak memory on CPU is the process-wide RSS high-water mark (VmHWM), reset after each "
        "model is built; cpu_rss_peak_minus_before_build_bytes is the model's own share.",
        "load_average: the machine's 1/5/15-minute load; above the thread count, other work "
        "shared the cores and wall times are inflated (compare cpu_seconds).",
    ]
    text = format_table(report)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if report.get("failed") and len(report["failed"]) == len(args.only):
        raise SystemExit(f"every model failed: {', '.join(report['failed'])}")
    return report


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


if __name__ == "__main__":
    main()
