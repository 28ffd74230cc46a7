"""Multi-scale STFT discriminator: shapes per scale, features, gradients."""

import pytest
import torch

from jen1cli.training.discriminator import MultiScaleSTFTDiscriminator, STFTDiscriminatorConfig
from jen1cli.training.losses import (
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)


def _tiny(**kwargs):
    config = STFTDiscriminatorConfig(n_ffts=(256, 128, 64), filters=4, max_filters=8, **kwargs)
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(config)


def test_outputs_per_scale():
    disc = _tiny(filters_scale=2)
    audio = torch.randn(2, 2, 1024)
    logits, features = disc(audio)
    assert len(logits) == len(features) == 3
    for n_fft, scale_logits, scale_features in zip((256, 128, 64), logits, features, strict=True):
        frames = 1024 // (n_fft // 4) + 1
        assert scale_logits.shape[:3] == (2, 1, frames)
        # Three frequency-strided layers halve n_fft/2 + 1 bins three times (rounding up).
        bins = n_fft // 2 + 1
        for _ in range(3):
            bins = (bins + 1) // 2
        assert scale_logits.shape[3] == bins
        # First conv + 3 dilated convs + 1 final conv; width grows x2 then caps at max_filters.
        assert [f.shape[1] for f in scale_features] == [4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="expected audio"):
        disc(torch.randn(2, 1, 1024))


def test_mono_config_and_scales_see_different_inputs():
    disc = _tiny(audio_channels=1)
    logits, _ = disc(torch.randn(1, 1, 512))
    assert [tuple(t.shape[2:]) for t in logits] == [(9, 17), (17, 9), (33, 5)]


def test_gradients_flow_to_audio_and_weights():
    disc = _tiny()
    real = torch.randn(1, 2, 1024)
    fake = (0.5 * torch.randn(1, 2, 1024)).requires_grad_()
    real_logits, real_feats = disc(real)
    fake_logits, fake_feats = disc(fake)
    adversarial = generator_hinge_loss(fake_logits)
    (adversarial + feature_matching_loss(real_feats, fake_feats)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    disc.zero_grad()
    d_loss = discriminator_hinge_loss(disc(real)[0], disc(fake.detach())[0])
    d_loss.backward()
    for scale in disc.discriminators:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in scale.parameters())
        assert scale.conv_post.parametrizations.weight.original1.grad.abs().sum() > 0


def test_feature_matching_zero_for_identical_inputs():
    disc = _tiny()
    audio = torch.randn(2, 2, 768)
    _, feats_a = disc(audio)
    _, feats_b = disc(audio.clone())
    assert feature_matching_loss(feats_a, feats_b).item() == 0.0
    _, feats_c = disc(audio + 0.1 * torch.randn_like(audio))
    assert feature_matching_loss(feats_a, feats_c).item() > 0
