"""The Fourier codec: pitch filterbank, exact lengths, masking, Griffin-Lim, training signal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jen1cli.config import AutoencoderConfig, Jen1Config
from jen1cli.model import Jen1Model, build_autoencoder
from jen1cli.modules.fourier_autoencoder import (
    FourierAutoencoder,
    from_mid_side,
    griffin_lim,
    to_mid_side,
)
from jen1cli.modules.pitch_filterbank import PitchFilterbank, band_edges

SR = 48_000


def tiny_config(**overrides) -> AutoencoderConfig:
    """Hop 480 (100 frames/s), 24 + 8 bands, a 2-block decoder of width 32, 512-point STFT."""
    fields = dict(
        latent_dim=32,
        ratios=(8, 6, 10),
        decoder="istft",
        mid_bands=24,
        side_bands=8,
        analysis_ffts=(4096, 1024),
        n_fft=1024,
        frames_per_latent=2,
        decoder_dim=32,
        decoder_layers=2,
        griffin_lim_iters=4,
    )
    fields.update(overrides)
    return AutoencoderConfig(**fields)


def tone(freq: float, seconds: float = 0.5, channels: int = 2) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = 0.5 * torch.sin(2 * math.pi * freq * t)
    return wave.float().expand(channels, -1)[None].clone()  # [1, C, N]


def test_config_chooses_the_codec():
    assert isinstance(build_autoencoder(tiny_config()), FourierAutoencoder)
    assert not isinstance(build_autoencoder(AutoencoderConfig()), FourierAutoencoder)


@pytest.mark.parametrize("n", [1, 479, 480, 481, 4_801])
def test_encode_and_decode_keep_exact_lengths(n):
    torch.manual_seed(0)
    codec = FourierAutoencoder(tiny_config()).eval()
    latent = codec.encode(0.1 * torch.randn(2, 2, n))
    assert latent.shape == (2, 32, math.ceil(n / 480))
    assert codec.decode(latent, n).shape == (2, 2, n)
    assert codec.decode(latent).shape == (2, 2, latent.shape[-1] * 480)


def test_bad_shapes_and_configs_are_refused():
    codec = FourierAutoencoder(tiny_config())
    with pytest.raises(ValueError, match="expected audio"):
        codec.encode(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="expected latent"):
        codec.decode(torch.zeros(1, 31, 4))
    with pytest.raises(ValueError, match="length must be"):
        codec.decode(torch.zeros(1, 32, 4), 5_000)
    with pytest.raises(ValueError, match="mid_bands \\+ side_bands"):
        FourierAutoencoder(tiny_config(latent_dim=30))
    with pytest.raises(ValueError, match="side channel"):
        FourierAutoencoder(tiny_config(audio_channels=1))


def test_band_edges_are_equal_tempered_between_knee_and_top():
    edges = band_edges(112, SR)
    assert np.all(np.diff(edges) > 0) and edges[-1] == pytest.approx(SR / 2)
    centres = edges[1:-1]
    mid = centres[(centres > 400) & (centres < 4000)]
    semitones = 12 * np.log2(mid[1:] / mid[:-1])
    # Well above the 50 Hz knee the spacing is (nearly) constant in semitones, and near one.
    assert semitones.max() / semitones.min() < 1.3
    assert 0.7 < semitones.mean() < 1.3


def test_a_tone_lights_the_band_around_its_pitch():
    bank = PitchFilterbank(112, SR, 960)
    centres = bank.edges[1:-1].numpy()
    for freq in (110.0, 261.63, 440.0, 1760.0):
        energies = bank(tone(freq, 1.0)[:, 0]).mean(dim=-1)[0]  # [bands]
        loudest = centres[int(energies.argmax())]
        assert abs(12 * math.log2(loudest / freq)) < 1.0  # within a semitone


def test_band_energy_agrees_across_analysis_resolutions():
    # The same tone read by long and short windows alone gives the same band energy.
    long_only = PitchFilterbank(40, SR, 960, analysis_ffts=(8192,))
    short_only = PitchFilterbank(40, SR, 960, analysis_ffts=(2048,))
    audio = tone(3000.0, 1.0)[:, 0]
    a, b = long_only.power(audio)[..., 5:-5].sum(1), short_only.power(audio)[..., 5:-5].sum(1)
    assert torch.allclose(a, b, rtol=0.05)


def test_mid_side_round_trip():
    x = torch.randn(3, 2, 100)
    assert torch.allclose(from_mid_side(to_mid_side(x)), x, atol=1e-6)
    mono = torch.randn(3, 1, 100)
    assert torch.equal(from_mid_side(to_mid_side(mono)), mono)


def test_griffin_lim_is_deterministic_and_recovers_a_tone():
    # The bundled model's STFT (n_fft 4096, hop 960) and iterations (32).
    x = tone(440.0, 1.0)[0, :1]  # [1, N]
    window = torch.hann_window(4096)
    mag = torch.stft(x, 4096, 960, window=window, return_complex=True).abs()
    y1 = griffin_lim(mag, 4096, 960, x.shape[-1], 32)
    y2 = griffin_lim(mag, 4096, 960, x.shape[-1], 32)
    assert torch.equal(y1, y2)
    spectrum = torch.fft.rfft(y1[0, 4_800:-4_800]).abs()
    peak_hz = float(spectrum.argmax()) * SR / (x.shape[-1] - 9_600)
    assert abs(peak_hz - 440.0) < 5.0
    assert float(y1.square().mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=0.15)


def test_training_masks_frames_and_eval_does_not():
    torch.manual_seed(0)
    codec = FourierAutoencoder(tiny_config(latent_mask_prob=0.5))
    x = 0.1 * torch.randn(2, 2, 9_600)
    assert codec.train()(x).latent_mask.float().mean() > 0.2
    assert not codec.eval()(x).latent_mask.any()


def test_spectral_loss_trains_the_decoder():
    torch.manual_seed(0)
    codec = FourierAutoencoder(tiny_config(latent_mask_prob=0.0)).train()
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    x = torch.cat([tone(220.0), tone(660.0)])
    first = None
    for _ in range(60):
        logs = codec(x, losses=True)
        loss = sum(logs.values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    assert not any(p.grad is None for p in codec.decoder.parameters())
    assert not list(codec.mid_bands.parameters())  # the encoder is fixed


def test_model_folder_round_trip(tmp_path):
    from jen1cli.testing import tiny_config as tiny_model_config

    config = tiny_model_config()
    config.autoencoder = tiny_config()
    config.whitener.latent_dim, config.whitener.keep_dim = 32, 30
    config.unet.latent_channels = 30
    config = Jen1Config.from_dict(config.to_dict())  # through JSON-like dicts and validation
    torch.manual_seed(0)
    model = Jen1Model(config)
    model.save_pretrained(tmp_path / "m")
    loaded = Jen1Model.from_pretrained(tmp_path / "m", load_text_encoder=False)
    latent = torch.randn(1, 32, 5)
    assert torch.equal(
        model.autoencoder.eval().decode(latent), loaded.autoencoder.eval().decode(latent)
    )


@torch.no_grad()
def test_a_piece_decoded_alone_matches_the_whole_away_from_its_edges():
    # Griffin-Lim's start phases depend on the frame index only (modulo the alignment), so a
    # chunk that starts on an aligned frame decodes like the same stretch of the whole.
    torch.manual_seed(0)
    codec = FourierAutoencoder(tiny_config(griffin_lim_iters=8)).eval()
    latent = torch.randn(1, 32, codec.frame_alignment + 120)
    whole = codec.decode(latent)
    start = codec.frame_alignment  # latent frames
    piece = codec.decode(latent[..., start:])
    hop = codec.hop_length
    middle = slice(40 * hop, 80 * hop)  # far from the piece's left edge
    a, b = whole[..., start * hop :][..., middle], piece[..., middle]
    assert float((a - b).norm() / a.norm()) < 1e-3
