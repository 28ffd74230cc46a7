"""Autoencoder (§4.1): lengths, frame count, frame masking, gradients, EnCodec weight mapping."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import EncodecConfig, EncodecModel

from jen1cli.config import AutoencoderConfig
from jen1cli.modules.autoencoder import Autoencoder, mask_latent_frames
from jen1cli.modules.encodec_weights import (
    autoencoder_from_encodec,
    encodec_config_to_autoencoder_config,
)


def tiny_config(**overrides) -> AutoencoderConfig:
    """A ~30k-parameter model with EnCodec's layout; hop 3 * 2 * 4 = 24 (odd ratio kept)."""
    fields = dict(
        latent_dim=6,
        base_channels=4,
        ratios=(3, 2, 4),
        lstm_layers=1,
        residual_layers=2,
    )
    fields.update(overrides)
    return AutoencoderConfig(**fields)


@pytest.fixture
def tiny() -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder(tiny_config()).eval()


def test_default_config_is_encodec_48khz_shaped() -> None:
    config = AutoencoderConfig()
    assert config.hop_length == 320
    assert config.frame_rate == 150
    model = Autoencoder(config)
    with torch.inference_mode():
        latent = model.encode(torch.zeros(1, 2, 1000))
    assert latent.shape == (1, 128, math.ceil(1000 / 320))


def test_default_config_is_what_encodec_48khz_maps_to() -> None:
    # facebook/encodec_48khz's settings that differ from EncodecConfig's (24 kHz) defaults.
    encodec_48khz = EncodecConfig(
        sampling_rate=48_000,
        audio_channels=2,
        normalize=True,
        chunk_length_s=1.0,
        overlap=0.01,
        norm_type="time_group_norm",
        use_causal_conv=False,
        target_bandwidths=[3.0, 6.0, 12.0, 24.0],
    )
    assert encodec_config_to_autoencoder_config(encodec_48khz) == AutoencoderConfig()


@pytest.mark.parametrize("length", [1, 23, 24, 25, 1001, 48_000 + 7])
def test_round_trip_keeps_length_and_frame_count_is_ceil(tiny: Autoencoder, length: int) -> None:
    hop = tiny.config.hop_length  # 24
    audio = torch.randn(1, 2, length)
    with torch.inference_mode():
        latent = tiny.encode(audio)
        assert latent.shape == (1, 6, math.ceil(length / hop))
        assert tiny.num_frames(length) == latent.shape[-1]
        out = tiny.decode(latent, length=length)
    assert out.shape == audio.shape
    assert torch.isfinite(out).all()


def test_decode_trims_the_full_decode(tiny: Autoencoder) -> None:
    latent = torch.randn(1, 6, 5)
    with torch.inference_mode():
        full = tiny.decode(latent)
        assert full.shape == (1, 2, 5 * 24)
        assert torch.equal(tiny.decode(latent, length=100), full[..., :100])


def test_bad_shapes_and_lengths_are_refused(tiny: Autoencoder) -> None:
    with pytest.raises(ValueError, match="audio"):
        tiny.encode(torch.zeros(1, 1, 100))  # mono into a stereo model
    with pytest.raises(ValueError, match="latent"):
        tiny.decode(torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match="length"):
        tiny.decode(torch.zeros(1, 6, 4), length=4 * 24 + 1)
    with pytest.raises(ValueError, match="norm"):
        Autoencoder(tiny_config(norm="batch_norm"))


def test_mask_latent_frames_fraction_and_zeroing() -> None:
    latent = torch.randn(8, 4, 5000) + 3.0  # no frame is zero by chance
    gen = torch.Generator().manual_seed(0)
    masked, mask = mask_latent_frames(latent, 0.05, generator=gen)
    assert mask.shape == (8, 5000) and mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - 0.05) < 0.005
    assert (masked.permute(0, 2, 1)[mask] == 0).all()
    assert torch.equal(masked.permute(0, 2, 1)[~mask], latent.permute(0, 2, 1)[~mask])
    # Same seed, same mask.
    _, again = mask_latent_frames(latent, 0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    with pytest.raises(ValueError):
        mask_latent_frames(latent, 1.5)


def test_forward_masks_in_training_only() -> None:
    torch.manual_seed(0)
    # Hop 4 and no LSTM: many latent frames (8000 in all) for little compute.
    model = Autoencoder(tiny_config(ratios=(2, 2), lstm_layers=0, latent_mask_prob=0.05))
    audio = torch.randn(4, 2, 4 * 2000)
    model.train()
    with torch.no_grad():
        out = model(audio)
        assert out.audio.shape == audio.shape and out.latent_mask.shape == (4, 2000)
        assert 0.035 < out.latent_mask.float().mean().item() < 0.065
        # The returned latent is the unmasked one.
        assert torch.allclose(out.latent, model.encode(audio))
        # The decoder saw the masked latent.
        masked = out.latent.masked_fill(out.latent_mask[:, None], 0.0)
        assert torch.allclose(out.audio, model.decode(masked, audio.shape[-1]), atol=1e-6)
        model.eval()
        out = model(audio)
        assert not out.latent_mask.any()
        assert torch.allclose(out.audio, model.decode(out.latent, audio.shape[-1]), atol=1e-6)


def test_gradients_reach_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    model = Autoencoder(tiny_config()).train()
    audio = torch.randn(2, 2, 500)
    out = model(audio)
    (out.audio - audio).abs().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_slim_config_without_lstm_or_norm() -> None:
    torch.manual_seed(0)
    config = tiny_config(ratios=(8, 6, 5, 4), lstm_layers=0, norm="none", conv_shortcut=False)
    assert config.hop_length == 960
    model = Autoencoder(config).eval()
    names = [n for n, _ in model.named_parameters()]
    assert not any("lstm" in n or "norm" in n or "shortcut" in n for n in names)
    audio = torch.randn(1, 2, 48_000 + 5)
    with torch.inference_mode():
        latent = model.encode(audio)
        assert latent.shape == (1, 6, math.ceil((48_000 + 5) / 960))
        assert model.decode(latent, audio.shape[-1]).shape == audio.shape


def test_encoder_is_local_with_weight_norm() -> None:
    """Without time_group_norm, far-away samples leave a frame alone (finite receptive field)."""
    torch.manual_seed(0)
    model = Autoencoder(tiny_config(norm="weight_norm", lstm_layers=0)).eval()
    audio = torch.randn(1, 2, 24 * 200)
    changed = audio.clone()
    changed[..., -24 * 50 :] = 0.0
    with torch.inference_mode():
        a, b = model.encode(audio), model.encode(changed)
    torch.testing.assert_close(a[..., :100], b[..., :100], atol=1e-6, rtol=0)
    assert not torch.allclose(a[..., -10:], b[..., -10:])


def _random_encodec(norm_type: str) -> EncodecModel:
    """A tiny non-causal stereo EnCodec (48 kHz-style) with every weight randomised."""
    torch.manual_seed(0)
    config = EncodecConfig(
        sampling_rate=48_000,
        audio_channels=2,
        normalize=True,
        hidden_size=8,
        num_filters=4,
        # An odd ratio (as 48 kHz's 5) and an even kernel make the padding splits asymmetric.
        upsampling_ratios=[5, 2],
        last_kernel_size=6,
        num_residual_layers=2,
        norm_type=norm_type,
        use_causal_conv=False,
        num_lstm_layers=2,
        codebook_size=16,
        target_bandwidths=[24.0],
    )
    model = EncodecModel(config)
    with torch.no_grad():  # GroupNorm/weight-norm gains would otherwise be all ones
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return model.eval()


@pytest.mark.parametrize("norm_type", ["time_group_norm", "weight_norm"])
def test_encodec_weights_reproduce_encodec(tmp_path, norm_type: str) -> None:
    reference = _random_encodec(norm_type)
    reference.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").exists()

    model = autoencoder_from_encodec(tmp_path)
    assert model.config == encodec_config_to_autoencoder_config(reference.config)
    assert model.config.norm == norm_type and not model.training

    x = torch.randn(2, 2, 1003)  # not a multiple of the hop (10)
    z = torch.randn(2, 8, 37)
    with torch.inference_mode():
        latent = model.encode(x)
        expected_latent = reference.encoder(x)
        assert latent.shape == (2, 8, math.ceil(1003 / 10))
        torch.testing.assert_close(latent, expected_latent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.decode(z), reference.decoder(z), atol=1e-5, rtol=1e-5)
        # Not trivially equal: the outputs carry signal.
        assert expected_latent.std() > 0.1


def test_encodec_mapping_from_model_and_config_checks() -> None:
    reference = _random_encodec("time_group_norm")
    derived = encodec_config_to_autoencoder_config(reference.config)
    assert derived.ratios == (5, 2) and derived.audio_channels == 2 and derived.latent_dim == 8
    # A training-only field may differ; an architectural one may not.
    model = autoencoder_from_encodec(
        reference, AutoencoderConfig(**{**vars(derived), "latent_mask_prob": 0.1})
    )
    assert model.config.latent_mask_prob == 0.1
    with pytest.raises(ValueError, match="dilation_growth_rate"):
        autoencoder_from_encodec(
            reference, AutoencoderConfig(**{**vars(derived), "dilation_growth_rate": 3})
        )
    with pytest.raises(ValueError, match="causal"):
        encodec_config_to_autoencoder_config(EncodecConfig(use_causal_conv=True))
