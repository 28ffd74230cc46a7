"""What to run, resolved once from the command line; the T5 text encoders every model uses."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from jen1cli.pipeline import Jen1Pipeline

from .measure import Clock, count_flops

DTYPES = Jen1Pipeline.UNET_DTYPES  # the names `jen1 generate --dtype` takes
PROMPT_TOKENS = 32  # a typical prompt ("a mellow piano ballad in D minor, 72 bpm, ...")


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
