"""MusicGen small / medium (``transformers``), with T5-base and EnCodec 32 kHz.

50 tokens/s (+3 for the delay pattern) of decoder steps at batch 2 (guidance 3) with a KV cache,
top-k 250 sampling, EnCodec decode. On a CPU a few tokens are timed at the start, middle and end of
the sequence and the cost is integrated over every position.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .measure import Clock, MemoryProbe, param_counts, stage, text_stage
from .settings import PROMPT_TOKENS, Settings, random_ids, t5_config, time_text_encoder

MUSICGEN_GUIDANCE = 3.0
MUSICGEN_TOP_K = 250  # MusicGen's released generation config samples with top-k 250
MUSICGEN_DELAY = 3  # the delay pattern adds num_codebooks - 1 steps


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
