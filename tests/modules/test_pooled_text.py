"""UNetConfig.pooled_text: the masked-mean prompt vector added to the time embedding."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

# The U-Net tests' inputs (same K and D) and their causality probe, shared rather than copied.
from test_unet import inputs, perturb_after  # same folder, on pytest's path

from jen1cli.config import UNetConfig
from jen1cli.model import Jen1Model
from jen1cli.modules.pooled_text import PooledTextEmbedding, masked_mean
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.testing import tiny_config as tiny_model_config
from jen1cli.testing import tiny_text_encoder

K, D, E = 4, 12, 32  # latent channels, context width, time-embedding width


def unet_config(**overrides) -> UNetConfig:
    kw = dict(
        latent_channels=K,
        channels=(16, 32),
        factors=(1, 2),
        res_blocks=(1, 1),
        attention=(False, True),
        head_dim=8,
        context_dim=D,
        time_embed_dim=E,
        norm_groups=4,
        ff_mult=1,
    )
    return UNetConfig(**{**kw, **overrides})


def wake(module: PooledTextEmbedding, seed: int = 0) -> None:
    """Give the zero-initialised last layer random weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    last = module.mlp[-1]
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=g))
        last.bias.copy_(torch.randn(last.bias.shape, generator=g))


def pooled_unet(seed: int = 0, awake: bool = True) -> OmniUNet1d:
    torch.manual_seed(seed)
    unet = OmniUNet1d(unet_config(pooled_text=True)).eval()
    if awake:
        wake(unet.pooled_text, seed)
    return unet


# --- masked_mean and the module on its own -----------------------------------------------------
def test_masked_mean_ignores_padding_and_matches_the_real_tokens_mean():
    g = torch.Generator().manual_seed(0)
    context = torch.randn(3, 6, D, generator=g)
    key_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]]).bool()
    pooled = masked_mean(context, key_mask)
    assert pooled.shape == (3, D)
    for i, n in enumerate((3, 6, 1)):
        torch.testing.assert_close(pooled[i], context[i, :n].mean(0))
    garbage = context.clone()
    garbage[~key_mask] = 1e3 * torch.randn(int((~key_mask).sum()), D, generator=g)
    torch.testing.assert_close(masked_mean(garbage, key_mask), pooled)
    # Without a mask every token counts, so the same change is visible.
    torch.testing.assert_close(masked_mean(context, None), context.mean(1))
    assert not torch.allclose(masked_mean(garbage, None), masked_mean(context, None))


def test_fresh_module_is_a_zero_and_use_text_gates_it():
    torch.manual_seed(0)
    module = PooledTextEmbedding(D, E)
    context = torch.randn(3, 5, D)
    assert torch.equal(module(context, None, None), torch.zeros(3, E))
    wake(module)
    use_text = torch.tensor([True, False, True])
    full = module(context, None, None)
    gated = module(context, None, use_text)
    assert (full.abs().amax(1) > 1e-3).all()
    torch.testing.assert_close(gated[use_text], full[use_text])
    assert torch.equal(gated[1], torch.zeros(E))


# --- wired into OmniUNet1d ----------------------------------------------------------------------
def test_config_default_is_off_and_adds_no_parameters():
    assert UNetConfig().pooled_text is False
    torch.manual_seed(0)
    plain = OmniUNet1d(unet_config())
    assert plain.pooled_text is None
    assert not any(k.startswith("pooled_text.") for k in plain.state_dict())
    pooled = OmniUNet1d(unet_config(pooled_text=True))
    extra = set(pooled.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("pooled_text.") for k in extra)


@torch.no_grad()
@pytest.mark.parametrize("causal", [False, True])
def test_fresh_pooled_unet_equals_the_plain_one(causal):
    # Zero-initialised last layer: switching the option on changes no output, with the same
    # weights for every shared parameter.
    torch.manual_seed(0)
    plain = OmniUNet1d(unet_config()).eval()
    pooled = OmniUNet1d(unet_config(pooled_text=True)).eval()
    missing, unexpected = pooled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pooled_text.") for k in missing)
    sample, masked, mask, context, context_mask = inputs(2, 17)
    for use_text in (None, torch.tensor([True, False]), torch.tensor([False, False])):
        a = plain(sample, 300, masked, mask, context, context_mask, use_text, causal=causal)
        b = pooled(sample, 300, masked, mask, context, context_mask, use_text, causal=causal)
        torch.testing.assert_close(b, a, atol=0, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("causal", [False, True])
def test_pooled_term_follows_the_prompt_only_for_text_samples(causal):
    unet = pooled_unet()
    sample, masked, mask, context, context_mask = inputs(2, 17)
    # A different prompt of the same length: the mean of its tokens differs.
    other = context + torch.randn_like(context)
    mixed = torch.tensor([True, False])
    out = unet(sample, 300, masked, mask, context, context_mask, mixed, causal=causal)
    changed = unet(sample, 300, masked, mask, other, context_mask, mixed, causal=causal)
    assert (changed[0] - out[0]).abs().max() > 1e-3  # the text sample follows its prompt
    torch.testing.assert_close(changed[1], out[1], atol=1e-6, rtol=0)  # the no-text one does not
    # The no-text sample gets exactly the unconditional output: time embedding only.
    alone = unet(sample[1:], 300, masked[1:], mask[1:], causal=causal)
    torch.testing.assert_close(out[1:], alone, atol=1e-5, rtol=1e-5)
    # The text sample in the mixed batch equals itself run alone with text.
    first = unet(sample[:1], 300, masked[:1], mask[:1], context[:1], context_mask[:1],
                 causal=causal)  # fmt: skip
    torch.testing.assert_close(out[:1], first, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_pooled_term_alone_carries_the_prompt():
    # Cross-attention removed from the picture: the prompt still reaches the output through the
    # pooled term (and only through it). Without pooled_text the output ignores the prompt.
    torch.manual_seed(0)
    config = unet_config(attention=(False, False), mid_attention=False)
    plain = OmniUNet1d(config).eval()
    pooled = OmniUNet1d(unet_config(attention=(False, False), mid_attention=False,
                                    pooled_text=True)).eval()  # fmt: skip
    pooled.load_state_dict(plain.state_dict(), strict=False)
    wake(pooled.pooled_text)
    sample, masked, mask, context, context_mask = inputs(2, 13)
    other = context + torch.randn_like(context)
    a = plain(sample, 300, masked, mask, context, context_mask)
    torch.testing.assert_close(plain(sample, 300, masked, mask, other, context_mask), a)
    b = pooled(sample, 300, masked, mask, context, context_mask)
    c = pooled(sample, 300, masked, mask, other, context_mask)
    assert (b - c).abs().amax(dim=(1, 2)).min() > 1e-3


@torch.no_grad()
def test_padding_tokens_do_not_reach_the_pooled_term():
    unet = pooled_unet()
    sample, masked, mask, context, context_mask = inputs(2, 13)
    out = unet(sample, 42, masked, mask, context, context_mask)
    garbage = context.clone()
    garbage[0, 3:] = 100.0 * torch.randn(2, D)  # only sample 0's padding changes
    torch.testing.assert_close(unet(sample, 42, masked, mask, garbage, context_mask), out)
    pooled = unet.pooled_text
    torch.testing.assert_close(
        pooled(garbage, context_mask, None), pooled(context, context_mask, None)
    )


@torch.no_grad()
@pytest.mark.parametrize("branch", ["text", "mixed"])
def test_causal_mode_stays_causal_with_pooled_text(branch):
    unet = pooled_unet()
    frames = 23
    sample, masked, mask, context, context_mask = inputs(2, frames)
    use_text = torch.tensor([True, True]) if branch == "text" else torch.tensor([True, False])
    out = unet(sample, 500, masked, mask, context, context_mask, use_text, causal=True)
    for t in (0, 6, 11, frames - 2):
        s2, m2, k2 = (perturb_after(x, t, seed=t) for x in (sample, masked, mask))
        out2 = unet(s2, 500, m2, k2, context, context_mask, use_text, causal=True)
        torch.testing.assert_close(out2[..., : t + 1], out[..., : t + 1], atol=1e-5, rtol=0)
        assert not torch.allclose(out2[..., t + 1 :], out[..., t + 1 :], atol=1e-3)


def test_gradients_reach_the_pooled_layers_only_from_text_samples():
    torch.manual_seed(0)
    unet = OmniUNet1d(unet_config(pooled_text=True))
    sample, masked, mask, context, context_mask = inputs(2, 14)
    out = unet(sample, torch.tensor([3, 600]), masked, mask, context, context_mask)
    out.square().mean().backward()
    last = unet.pooled_text.mlp[-1]
    # Zero-init last layer: its own gradient is non-zero, so training can wake it up.
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    unet.zero_grad()
    no_text = torch.tensor([False, False])
    out = unet(sample, torch.tensor([3, 600]), masked, mask, context, context_mask, no_text)
    out.square().mean().backward()
    grads = [p.grad for p in unet.pooled_text.parameters()]
    assert all(g is None or not g.abs().any() for g in grads)


# --- model folders --------------------------------------------------------------------------------
def test_a_pooled_model_round_trips_through_save_and_load(tmp_path):
    config = tiny_model_config()
    config.unet.pooled_text = True
    torch.manual_seed(0)
    model = Jen1Model(config, tiny_text_encoder(config.text_encoder.hidden_size)).eval()
    wake(model.unet.pooled_text, seed=3)
    folder = model.save_pretrained(tmp_path / "pooled")
    assert json.loads((folder / "config.json").read_text())["unet"]["pooled_text"] is True
    loaded = Jen1Model.from_pretrained(folder)
    assert loaded.config.unet.pooled_text is True and loaded.unet.pooled_text is not None
    state, original = loaded.unet.state_dict(), model.unet.state_dict()
    assert state.keys() == original.keys()
    assert all(torch.equal(state[k], original[k]) for k in state)
    k, t = config.unet.latent_channels, 11
    g = torch.Generator().manual_seed(5)
    sample = torch.randn(2, k, t, generator=g)
    mask = torch.ones(2, 1, t)
    with torch.no_grad():
        context, context_mask = model.text_encoder(["a slow waltz", "fast drums"])
        a = model.unet(sample, 500, torch.zeros_like(sample), mask, context, context_mask)
        b = loaded.unet(sample, 500, torch.zeros_like(sample), mask, context, context_mask)
    torch.testing.assert_close(b, a, atol=0, rtol=0)


def test_an_old_config_without_the_field_still_loads(tiny_model_dir, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir, folder)
    data = json.loads((folder / "config.json").read_text())
    assert data["unet"].pop("pooled_text") is False  # written by the current code
    (folder / "config.json").write_text(json.dumps(data, indent=2))
    model = Jen1Model.from_pretrained(folder)  # strict weight loading
    assert model.config.unet.pooled_text is False and model.unet.pooled_text is None
    assert not any(k.startswith("pooled_text.") for k in model.unet.state_dict())
