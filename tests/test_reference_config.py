"""The full-size reference config (models/jen1-746m) is complete, valid and ~746 M U-Net params."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from jen1cli.config import Jen1Config
from jen1cli.modules.attention import CrossAttention
from jen1cli.modules.unet import OmniUNet1d

CONFIG = Path(__file__).resolve().parents[1] / "models" / "jen1-746m" / "config.json"
PAPER_PARAMS = 746_000_000  # §5: "resulting in 746M parameters"


def test_reference_config_is_complete_and_valid():
    config = Jen1Config.load(CONFIG)  # from_dict validates the parts against each other
    config.validate()
    config.unet.validate()
    # Complete: every field of every part is written out, so the file alone describes the model.
    data = json.loads(CONFIG.read_text())
    for part, cls in Jen1Config._PARTS.items():
        assert set(data[part]) == {f.name for f in dataclasses.fields(cls)}, part
    assert config.autoencoder.hop_length == 320 and config.autoencoder.latent_dim == 128
    assert config.whitener.keep_dim == config.unet.latent_channels == 122
    assert config.text_encoder.name_or_path == "google/flan-t5-large"
    assert config.text_encoder.hidden_size == config.unet.context_dim == 1024
    assert config.window_seconds == 10.0


def test_reference_unet_has_746m_parameters_and_1024_wide_cross_attention():
    config = Jen1Config.load(CONFIG)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        unet = OmniUNet1d(config.unet)
    n = sum(p.numel() for p in unet.parameters())
    assert abs(n - PAPER_PARAMS) <= 0.05 * PAPER_PARAMS, f"{n / 1e6:.1f} M"
    cross = [m for m in unet.modules() if isinstance(m, CrossAttention)]
    assert cross, "the reference U-Net must cross-attend to text"
    for layer in cross:
        assert layer.to_k.in_features == layer.to_v.in_features == 1024
