"""Tiny random models for tests and smoke runs: built offline from configs, never downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from jen1cli.config import (
    AutoencoderConfig,
    DiffusionConfig,
    Jen1Config,
    TextEncoderConfig,
    UNetConfig,
    WhitenerConfig,
)


def tiny_config(window_seconds: float = 1.0) -> Jen1Config:
    """A few-thousand-parameter model with the real architecture (hop 320, 150 frames/s)."""
    return Jen1Config(
        name="jen1-tiny",
        autoencoder=AutoencoderConfig(
            latent_dim=8, base_channels=4, ratios=(8, 8, 5), lstm_layers=0, norm="weight_norm"
        ),
        whitener=WhitenerConfig(latent_dim=8, keep_dim=6),
        unet=UNetConfig(
            latent_channels=6,
            channels=(16, 32),
            factors=(1, 2),
            res_blocks=(1, 1),
            attention=(False, True),
            head_dim=8,
            context_dim=16,
            time_embed_dim=32,
            norm_groups=4,
            ff_mult=1,
        ),
        text_encoder=TextEncoderConfig(name_or_path="text_encoder", max_length=32, hidden_size=16),
        diffusion=DiffusionConfig(num_inference_steps=3),
        window_seconds=window_seconds,
    )


def tiny_text_encoder(hidden_size: int = 16, max_length: int = 32):
    """A random one-layer T5 encoder with the file-free byte-level tokenizer."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    from jen1cli.modules.text_encoder import TextEncoder

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=hidden_size, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    return TextEncoder(T5EncoderModel(config).eval(), tokenizer, max_length=max_length)


def tiny_model(seed: int = 0, window_seconds: float = 1.0):
    """A tiny random Jen1Model whose whitener is fitted on encodings of noise."""
    from jen1cli.model import Jen1Model

    torch.manual_seed(seed)
    config = tiny_config(window_seconds)
    model = Jen1Model(config, tiny_text_encoder(config.text_encoder.hidden_size)).eval()
    with torch.no_grad():
        audio = 0.1 * torch.randn(4, 2, config.sample_rate)
        model.whitener.update(model.autoencoder.encode(audio))
        model.whitener.fit()
    return model


def write_tiny_model(path: str | Path, seed: int = 0, window_seconds: float = 1.0) -> Path:
    """Write a tiny random model folder (config, safetensors, text encoder) to ``path``."""
    return tiny_model(seed, window_seconds).save_pretrained(path)


def tiny_encodec_config(**overrides):
    """A tiny random-weight EnCodec config in the 48 kHz model's shape (stereo, hop 8·8·5 = 320)."""
    from transformers import EncodecConfig

    settings = dict(
        sampling_rate=48_000,
        audio_channels=2,
        hidden_size=8,
        num_filters=4,
        upsampling_ratios=[8, 8, 5],
        num_lstm_layers=1,
        norm_type="weight_norm",
        use_causal_conv=False,
        codebook_size=16,
        target_bandwidths=[24.0],
    )
    return EncodecConfig(**{**settings, **overrides})
