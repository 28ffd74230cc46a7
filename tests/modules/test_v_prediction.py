"""The U-Net's v-prediction output and per-frame norms, and loading of pre-fix model folders."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler

from jen1cli.config import DiffusionConfig, Jen1Config, UNetConfig
from jen1cli.modules.frame_norm import FrameLayerNorm, FrameRMSNorm, frame_norm
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.modules.v_prediction import alpha_bar_at, alphas_cumprod, epsilon_from_v
from jen1cli.testing import tiny_config


@pytest.mark.parametrize("schedule", ["scaled_linear", "linear"])
def test_alphas_cumprod_match_diffusers(schedule):
    config = DiffusionConfig(beta_schedule=schedule)
    ours = alphas_cumprod(config)
    theirs = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
    ).alphas_cumprod
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-7)


def test_alpha_bar_interpolates_fractional_steps():
    table = alphas_cumprod(DiffusionConfig())
    got = alpha_bar_at(table, torch.tensor([0.0, 10.0, 10.5, 999.0, 1200.0]))
    want = torch.stack([table[0], table[10], (table[10] + table[11]) / 2, table[999], table[999]])
    torch.testing.assert_close(got, want.float())


def test_epsilon_from_the_true_v_is_the_true_noise():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    a = alphas_cumprod(DiffusionConfig())[torch.tensor([0, 500, 999])].float()
    s = a[:, None, None]
    xt = s.sqrt() * x0 + (1 - s).sqrt() * eps
    v = s.sqrt() * eps - (1 - s).sqrt() * x0
    torch.testing.assert_close(epsilon_from_v(v, xt, a), eps, rtol=1e-5, atol=1e-5)


def test_untrained_v_unet_with_zero_output_is_the_linear_denoiser():
    config = tiny_config().unet
    unet = OmniUNet1d(config).eval()
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    x = torch.randn(2, config.latent_channels, 20)
    t = torch.tensor([100, 900])
    out = unet(x, t, torch.zeros_like(x), torch.ones(2, 1, 20))
    a = alphas_cumprod(DiffusionConfig())[t].float()[:, None, None]
    torch.testing.assert_close(out, (1 - a).sqrt() * x)


def test_v_unet_reads_the_schedule_it_is_given():
    config = tiny_config().unet
    other = DiffusionConfig(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    a = OmniUNet1d(config)
    b = OmniUNet1d(config, other)
    assert not torch.allclose(a.alphas_cumprod, b.alphas_cumprod)
    assert "alphas_cumprod" not in a.state_dict()  # derived, so weight files do not change


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_frame_norms_use_all_channels_of_one_frame(kind):
    norm = frame_norm(kind, 8, groups=4)
    assert isinstance(norm, FrameLayerNorm if kind == "layer" else FrameRMSNorm)
    x = torch.randn(2, 8, 6)
    y = x.clone()
    y[..., 3:] *= 5  # later frames change: earlier ones normalise the same (causal)
    torch.testing.assert_close(norm(y)[..., :3], norm(x)[..., :3])
    frame = x[:, :, 1]  # [2, 8]
    if kind == "layer":
        want = torch.nn.functional.layer_norm(frame, (8,), eps=1e-5)
    else:
        want = frame * (frame.pow(2).mean(1, keepdim=True) + 1e-5).rsqrt()
    torch.testing.assert_close(norm(x)[:, :, 1], want)
    with pytest.raises(ValueError, match="unknown unet.norm"):
        frame_norm("batch", 8, 4)


def test_config_rejects_unknown_norm_and_prediction():
    with pytest.raises(ValueError, match="unet.norm"):
        UNetConfig(norm="batch").validate()
    with pytest.raises(ValueError, match="unet.prediction"):
        UNetConfig(prediction="x0").validate()
    UNetConfig(norm="layer", channels=(100, 200, 320, 448)).validate()  # no group divisibility


def test_config_files_from_before_the_fix_load_as_they_were_trained(tmp_path):
    data = tiny_config().to_dict()
    del data["unet"]["norm"], data["unet"]["prediction"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    old = Jen1Config.load(path)
    assert (old.unet.norm, old.unet.prediction) == ("group", "epsilon")
    assert (tiny_config().unet.norm, tiny_config().unet.prediction) == ("layer", "v")
    saved = tmp_path / "again.json"
    old.save(saved)  # written out in full, so it stays what it is
    assert json.loads(saved.read_text())["unet"]["norm"] == "group"
