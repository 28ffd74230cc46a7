"""Start the §4.1 autoencoder from EnCodec weights (`transformers`' `EncodecModel`, no quantiser).

`Autoencoder` lays its layers out exactly as EnCodec's SEANet encoder and decoder do, so the weights
copy key for key; `tests/modules/test_autoencoder.py` proves the outputs match.

Two EnCodec habits are deliberately not carried over: EnCodec 48 kHz divides each input chunk by
its RMS (``normalize=True``) and encodes 1 s chunks with overlap-add. JEN-1's continuous latent
model sees raw audio in one pass; the whitening statistics (Algorithm 1) absorb the latent's scale.
EnCodec's decoder was trained to emit unit-RMS audio, so EnCodec-initialised reconstructions come
out at the wrong level until the autoencoder is fine-tuned (§4.1 training).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from jen1cli.config import AutoencoderConfig
from jen1cli.modules.autoencoder import Autoencoder

if TYPE_CHECKING:
    from transformers import EncodecConfig, EncodecModel

# Fields that only matter for training, not for which weights fit.
_TRAINING_ONLY = {"latent_mask_prob"}


def encodec_config_to_autoencoder_config(cfg: EncodecConfig) -> AutoencoderConfig:
    """The `AutoencoderConfig` whose network has EnCodec's encoder/decoder shapes."""
    if cfg.use_causal_conv:
        # The 24 kHz model is causal; JEN-1's autoencoder (like EnCodec 48 kHz) is not.
        raise ValueError("causal EnCodec models (use_causal_conv=True) are not supported")
    return AutoencoderConfig(
        sample_rate=cfg.sampling_rate,
        audio_channels=cfg.audio_channels,
        latent_dim=cfg.hidden_size,
        base_channels=cfg.num_filters,
        ratios=tuple(cfg.upsampling_ratios),
        residual_layers=cfg.num_residual_layers,
        kernel_size=cfg.kernel_size,
        last_kernel_size=cfg.last_kernel_size,
        residual_kernel_size=cfg.residual_kernel_size,
        dilation_growth_rate=cfg.dilation_growth_rate,
        compress=cfg.compress,
        lstm_layers=cfg.num_lstm_layers,
        norm=cfg.norm_type,
        pad_mode=cfg.pad_mode,
        conv_shortcut=getattr(cfg, "use_conv_shortcut", True),
    )


def _check_compatible(config: AutoencoderConfig, derived: AutoencoderConfig) -> None:
    """Refuse a config whose architecture differs from the checkpoint's (shapes alone can agree)."""
    wrong = [
        f"{f.name}: {getattr(config, f.name)!r} != EnCodec's {getattr(derived, f.name)!r}"
        for f in dataclasses.fields(AutoencoderConfig)
        if f.name not in _TRAINING_ONLY and getattr(config, f.name) != getattr(derived, f.name)
    ]
    if wrong:
        raise ValueError("config does not match the EnCodec checkpoint: " + "; ".join(wrong))


def autoencoder_from_encodec(
    path_or_model: str | Path | EncodecModel, config: AutoencoderConfig | None = None
) -> Autoencoder:
    """Build an `Autoencoder` holding EnCodec's encoder and decoder weights (quantiser dropped).

    Args:
        path_or_model: a local folder or Hub repo id (e.g. ``facebook/encodec_48khz``), loaded
            from safetensors only, or an `EncodecModel` already in memory.
        config: the autoencoder config to use; derived from the EnCodec config when None. Only
            training-time fields (``latent_mask_prob``) may differ from the checkpoint's.

    Returns:
        The autoencoder in eval mode, float32, on the CPU.
    """
    from transformers import EncodecModel

    if isinstance(path_or_model, str | Path):
        model = EncodecModel.from_pretrained(str(path_or_model), use_safetensors=True)
    elif isinstance(path_or_model, EncodecModel):
        model = path_or_model
    else:
        raise TypeError(f"expected a path, a repo id or an EncodecModel, got {type(path_or_model)}")

    derived = encodec_config_to_autoencoder_config(model.config)
    if config is None:
        config = derived
    else:
        _check_compatible(config, derived)

    autoencoder = Autoencoder(config)
    # Same module tree, same names: keep encoder.* and decoder.*, drop quantizer.* (codebooks).
    state = {
        key: value.detach().float().cpu()
        for key, value in model.state_dict().items()
        if key.startswith(("encoder.", "decoder."))
    }
    autoencoder.load_state_dict(state, strict=True)
    return autoencoder.eval()
