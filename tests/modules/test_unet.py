"""OmniUNet1d: causality of the unidirectional mode, the text / no-text (CFG) branches, shapes."""

from __future__ import annotations

import pytest
import torch

from jen1cli.config import UNetConfig
from jen1cli.modules.frame_norm import FrameGroupNorm
from jen1cli.modules.layers import Downsample1d, ModeConv1d, Upsample1d
from jen1cli.modules.unet import OmniUNet1d

K, D = 4, 12  # latent channels, context width


def tiny_config(**overrides) -> UNetConfig:
    # factors 2 * 3 = 6, so the tested lengths below are not multiples of the down-sampling.
    kw = dict(
        latent_channels=K,
        channels=(16, 32, 32),
        factors=(1, 2, 3),
        res_blocks=(1, 1, 2),
        attention=(False, True, True),
        head_dim=8,
        context_dim=D,
        time_embed_dim=32,
        norm_groups=4,
        ff_mult=2,
    )
    return UNetConfig(**{**kw, **overrides})


@pytest.fixture(scope="module")
def unet() -> OmniUNet1d:
    torch.manual_seed(0)
    return OmniUNet1d(tiny_config()).eval()


def inputs(batch: int, frames: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, K, frames, generator=g)
    masked = torch.randn(batch, K, frames, generator=g)
    mask = (torch.rand(batch, 1, frames, generator=g) > 0.5).float()
    context = torch.randn(batch, 5, D, generator=g)
    context_mask = torch.ones(batch, 5, dtype=torch.bool)
    context_mask[0, 3:] = False  # sample 0 has 3 real tokens, then padding
    return sample, masked, mask, context, context_mask


def perturb_after(x: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = x.clone()
    y[..., t + 1 :] = torch.randn(y[..., t + 1 :].shape, generator=g)
    return y


USE_TEXT = {
    "text": torch.tensor([True, True]),
    "no-text": torch.tensor([False, False]),
    "mixed": torch.tensor([True, False]),
}


@torch.no_grad()
@pytest.mark.parametrize("frames", [23, 31])
@pytest.mark.parametrize("branch", list(USE_TEXT))
def test_causal_mode_ignores_future_frames(unet, frames, branch):
    sample, masked, mask, context, context_mask = inputs(2, frames)
    use_text = USE_TEXT[branch]
    out = unet(sample, 500, masked, mask, context, context_mask, use_text, causal=True)
    for t in (0, 4, 11, frames - 2):
        s2, m2, k2 = (perturb_after(x, t, seed=t) for x in (sample, masked, mask))
        out2 = unet(s2, 500, m2, k2, context, context_mask, use_text, causal=True)
        torch.testing.assert_close(out2[..., : t + 1], out[..., : t + 1], atol=1e-5, rtol=0)
        assert not torch.allclose(out2[..., t + 1 :], out[..., t + 1 :], atol=1e-3)


@torch.no_grad()
@pytest.mark.parametrize("branch", ["text", "mixed"])
def test_bidirectional_mode_sees_future_frames(unet, branch):
    sample, masked, mask, context, context_mask = inputs(2, 23)
    use_text = USE_TEXT[branch]
    out = unet(sample, 500, masked, mask, context, context_mask, use_text)
    for t in (0, 11):
        s2, m2, k2 = (perturb_after(x, t, seed=t) for x in (sample, masked, mask))
        out2 = unet(s2, 500, m2, k2, context, context_mask, use_text)
        # Every sample's earlier frames move, the no-text one included.
        diff = (out2[..., : t + 1] - out[..., : t + 1]).abs().amax(dim=(1, 2))
        assert (diff > 1e-3).all()


@torch.no_grad()
@pytest.mark.parametrize("causal", [False, True])
def test_no_text_ignores_context_and_text_depends_on_it(unet, causal):
    sample, masked, mask, context, context_mask = inputs(2, 17)
    other = torch.randn_like(context)
    off = torch.tensor([False, False])
    no_text = unet(sample, 300, masked, mask, context, context_mask, off, causal=causal)
    torch.testing.assert_close(
        unet(sample, 300, masked, mask, other, context_mask, off, causal=causal), no_text
    )
    torch.testing.assert_close(unet(sample, 300, masked, mask, None, causal=causal), no_text)
    with_text = unet(sample, 300, masked, mask, context, context_mask, causal=causal)
    changed = unet(sample, 300, masked, mask, other, context_mask, causal=causal)
    assert (with_text - changed).abs().amax(dim=(1, 2)).min() > 1e-3
    assert (with_text - no_text).abs().amax(dim=(1, 2)).min() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("causal", [False, True])
def test_mixed_batch_equals_halves_run_separately(unet, causal):
    sample, masked, mask, context, context_mask = inputs(2, 19)
    t = torch.tensor([100, 700])
    mixed = unet(sample, t, masked, mask, context, context_mask, USE_TEXT["mixed"], causal=causal)
    first = unet(sample[:1], t[:1], masked[:1], mask[:1], context[:1], context_mask[:1],
                 causal=causal)  # fmt: skip
    second = unet(sample[1:], t[1:], masked[1:], mask[1:], causal=causal)
    torch.testing.assert_close(mixed[:1], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1:], second, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("branch", ["text", "mixed"])
def test_context_mask_hides_padded_tokens(unet, branch):
    sample, masked, mask, context, context_mask = inputs(2, 13)
    use_text = USE_TEXT[branch]
    out = unet(sample, 42, masked, mask, context, context_mask, use_text)
    garbage = context.clone()
    garbage[0, 3:] = 100.0 * torch.randn(2, D)  # only sample 0's padded tokens change
    torch.testing.assert_close(unet(sample, 42, masked, mask, garbage, context_mask, use_text), out)
    # Without the mask the same change is visible: the test above can fail.
    assert not torch.allclose(unet(sample, 42, masked, mask, garbage, None, use_text), out)


@torch.no_grad()
@pytest.mark.parametrize("frames", [1, 7, 13])
@pytest.mark.parametrize("causal", [False, True])
def test_output_shape_equals_input_shape(unet, frames, causal):
    sample, masked, mask, context, context_mask = inputs(2, frames)
    out = unet(sample, 999, masked, mask, context, context_mask, causal=causal)
    assert out.shape == sample.shape
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_timestep_forms_agree_and_time_matters(unet):
    sample, masked, mask, context, context_mask = inputs(2, 11)
    ref = unet(sample, torch.tensor([250, 250]), masked, mask, context, context_mask)
    for t in (250, 250.0, torch.tensor(250), torch.tensor([250.0, 250.0])):
        torch.testing.assert_close(unet(sample, t, masked, mask, context, context_mask), ref)
    later = unet(sample, 900, masked, mask, context, context_mask)
    assert (later - ref).abs().max() > 1e-3


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    unet = OmniUNet1d(tiny_config())
    sample, masked, mask, context, context_mask = inputs(2, 14)
    out = unet(sample, torch.tensor([3, 600]), masked, mask, context, context_mask,
               USE_TEXT["mixed"])  # fmt: skip
    out.square().mean().backward()
    for name, p in unet.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bad_inputs_raise(unet):
    sample, masked, mask, context, context_mask = inputs(2, 9)
    with pytest.raises(ValueError, match="no context"):
        unet(sample, 1, masked, mask, None, use_text=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="context width"):
        unet(sample, 1, masked, mask, torch.randn(2, 5, D + 1))
    with pytest.raises(ValueError, match="no real token"):
        unet(sample, 1, masked, mask, context, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be"):
        unet(sample, 1, masked, mask[..., :-1])


@torch.no_grad()
def test_layers_are_causal_in_causal_mode():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 24)
    down = Downsample1d(8, 3)  # causal output j may read inputs <= 3j only
    x1 = perturb_after(x, 10, seed=0)  # frames 11.. change: outputs 0..3 read <= 9
    torch.testing.assert_close(down(x1, causal=True)[..., :4], down(x, causal=True)[..., :4])
    assert not torch.allclose(down(x1, causal=True)[..., 4], down(x, causal=True)[..., 4])
    assert not torch.allclose(down(x1)[..., 3], down(x)[..., 3])  # bidirectional looks ahead
    x2 = perturb_after(x, 11, seed=0)  # frames 12.. change
    up = Upsample1d(8, 2)
    torch.testing.assert_close(up(x2, causal=True)[..., :24], up(x, causal=True)[..., :24])
    conv = ModeConv1d(8, 8, 5, dilation=2)
    torch.testing.assert_close(conv(x2, causal=True)[..., :12], conv(x, causal=True)[..., :12])
    assert conv(x, causal=True).shape == conv(x).shape == x.shape
    norm = FrameGroupNorm(4, 8)  # statistics per frame: no frame reads another
    torch.testing.assert_close(norm(x2)[..., :12], norm(x)[..., :12])
    frame = x[..., 5]  # [1, 8]
    expected = torch.nn.functional.group_norm(frame, 4, eps=norm.eps)
    torch.testing.assert_close(norm(x)[..., 5], expected)


def test_config_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="one entry per level"):
        OmniUNet1d(tiny_config(res_blocks=(1, 1)))
    with pytest.raises(ValueError, match="odd"):
        OmniUNet1d(tiny_config(kernel_size=4))
    with pytest.raises(ValueError, match="head_dim"):
        OmniUNet1d(tiny_config(head_dim=12))
