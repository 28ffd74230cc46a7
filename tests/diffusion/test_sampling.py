"""Sampling: schedulers on the training betas, guidance in one forward, seeds, progress."""

import pytest
import torch
from torch import nn

from jen1cli.config import DiffusionConfig, UNetConfig
from jen1cli.diffusion.sampling import predict_noise, sample
from jen1cli.diffusion.schedule import (
    SCHEDULERS,
    make_noise_scheduler,
    make_sampling_scheduler,
)
from jen1cli.diffusion.tasks import mask_latent, spans_to_mask
from jen1cli.modules.unet import OmniUNet1d

K, T, D = 4, 16, 8


class Oracle(nn.Module):
    """Knows the clean latent z0: returns the exact ε of its input under the training schedule."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target  # [1|B, k, T]
        self.alphas_cumprod = make_noise_scheduler(DiffusionConfig()).alphas_cumprod

    def forward(self, sample, timestep, masked_latent, mask, *args, causal=False):
        ab = self.alphas_cumprod[timestep.round().long()].view(-1, 1, 1)
        return (sample - ab.sqrt() * self.target) / (1 - ab).sqrt()


class Recorder(nn.Module):
    """A tiny conv with OmniUNet1d's signature that records each call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2 * K + 1, K, 3, padding=1)
        self.text = nn.Linear(D, K)
        self.calls: list[dict] = []

    def forward(
        self,
        sample,
        timestep,
        masked_latent,
        mask,
        context=None,
        context_mask=None,
        use_text=None,
        causal=False,
    ):
        self.calls.append(
            {
                "batch": sample.shape[0],
                "timestep": timestep.clone(),
                "use_text": None if use_text is None else use_text.tolist(),
                "causal": causal,
                "mask": mask.clone(),
                "masked_latent": masked_latent.clone(),
            }
        )
        h = 0.1 * self.conv(torch.cat([sample, masked_latent, mask], dim=1))
        if context is not None:
            h = h + (self.text(context.mean(1)) * use_text[:, None].float())[..., None]
        return h


def _context(batch: int = 2):
    gen = torch.Generator().manual_seed(7)
    return torch.randn(batch, 3, D, generator=gen), torch.ones(batch, 3, dtype=torch.bool)


def test_sampling_schedulers_share_the_training_betas():
    config = DiffusionConfig()
    train = make_noise_scheduler(config).alphas_cumprod
    for name in SCHEDULERS:
        assert torch.equal(make_sampling_scheduler(config, name).alphas_cumprod, train)


def test_unknown_scheduler_lists_the_choices():
    with pytest.raises(ValueError, match="dpmsolver\\+\\+, ddim, euler"):
        make_sampling_scheduler(DiffusionConfig(), "pndm")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_each_scheduler_recovers_the_latent_from_an_exact_denoiser(name):
    # With the exact ε of the training schedule every solver lands on z0: this fails if the
    # sampling betas, the input scaling (Euler) or clipping (DDIM) disagree with training.
    target = 3 * torch.randn(1, K, T, generator=torch.Generator().manual_seed(0))
    context, context_mask = _context()
    out = sample(
        Oracle(target),
        shape=(2, K, T),
        context=context,
        context_mask=context_mask,
        scheduler=name,
        # 5 divides T = 1000: diffusers' DDIM then steps exactly between the trailing timesteps
        # and ends clean (otherwise it stops at t = 0, one training step of noise short).
        num_inference_steps=5,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert out.shape == (2, K, T) and out.dtype == torch.float32
    assert torch.allclose(out, target.expand(2, -1, -1), atol=1e-4)


def test_scheduler_instance_is_accepted_and_left_untouched():
    scheduler = make_sampling_scheduler(DiffusionConfig(), "euler")
    target = torch.randn(1, K, T, generator=torch.Generator().manual_seed(2))
    out = sample(
        Oracle(target),
        shape=(1, K, T),
        scheduler=scheduler,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(out, target, atol=1e-3)
    assert scheduler.num_inference_steps is None  # sample() ran on a copy


@pytest.mark.parametrize("name", SCHEDULERS)
def test_seed_gives_bit_identical_samples(name):
    unet = Recorder()
    context, context_mask = _context()

    def run(seed: int) -> torch.Tensor:
        return sample(
            unet,
            shape=(2, K, T),
            context=context,
            context_mask=context_mask,
            scheduler=name,
            num_inference_steps=5,
            guidance_scale=2.5,
            generator=torch.Generator().manual_seed(seed),
        )

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_guidance_runs_cond_and_uncond_in_one_forward():
    unet = Recorder()
    context, context_mask = _context()
    steps = 5
    sample(
        unet,
        shape=(2, K, T),
        context=context,
        context_mask=context_mask,
        causal=True,
        num_inference_steps=steps,
        guidance_scale=3.0,
    )
    assert len(unet.calls) == steps
    for call in unet.calls:
        assert call["batch"] == 4
        assert call["use_text"] == [True, True, False, False]
        assert call["causal"] is True
        assert call["timestep"].shape == (4,)
    # Timesteps go down from the noisiest training step.
    ts = [int(c["timestep"][0]) for c in unet.calls]
    assert ts[0] == 999 and ts == sorted(ts, reverse=True)


@pytest.mark.parametrize("guidance, with_context", [(1.0, True), (3.0, False)])
def test_single_branch_when_guidance_is_off(guidance, with_context):
    unet = Recorder()
    context, context_mask = _context() if with_context else (None, None)
    sample(
        unet,
        shape=(2, K, T),
        context=context,
        context_mask=context_mask,
        num_inference_steps=3,
        guidance_scale=guidance,
    )
    assert [c["batch"] for c in unet.calls] == [2, 2, 2]
    expected = [True, True] if with_context else None
    assert all(c["use_text"] == expected for c in unet.calls)


class _Branches(nn.Module):
    """Returns 1 for the conditional branch and -2 for the unconditional one."""

    def forward(
        self, sample, timestep, masked_latent, mask, context, context_mask, use_text, causal=False
    ):
        value = torch.where(use_text, 1.0, -2.0).view(-1, 1, 1)
        return value.expand_as(sample).clone()


def test_guidance_formula():
    x = torch.zeros(3, K, T)
    context, context_mask = _context(3)
    eps = predict_noise(
        _Branches(),
        x,
        torch.tensor(500),
        x,
        torch.ones(3, 1, T),
        context,
        context_mask,
        causal=False,
        guidance_scale=4.0,
    )
    # ε_u + s (ε_c − ε_u) = −2 + 4 · 3
    assert eps.shape == x.shape and bool((eps == 10.0).all())


def test_callback_once_per_step():
    events = []
    sample(
        Recorder(),
        shape=(1, K, T),
        num_inference_steps=4,
        scheduler="euler",
        callback=lambda *e: events.append(e),
    )
    assert events == [("denoise", i, 4) for i in range(1, 5)]


def test_masks_ride_along_in_context():
    unet = Recorder()
    z = torch.randn(1, K, T) + 5
    mask = spans_to_mask(T, [(4, 9)])
    masked = mask_latent(z, mask)
    sample(
        unet,
        shape=(2, K, T),
        masked_latent=masked,
        mask=mask,
        num_inference_steps=2,
        guidance_scale=1.0,
    )
    for call in unet.calls:
        assert torch.equal(call["mask"], mask.expand(2, -1, -1))
        assert torch.equal(call["masked_latent"], masked.expand(2, -1, -1))
    # Text-to-music by default: full mask, empty masked latent.
    unet = Recorder()
    sample(unet, shape=(1, K, T), num_inference_steps=1)
    assert bool((unet.calls[0]["mask"] == 1).all())
    assert bool((unet.calls[0]["masked_latent"] == 0).all())


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        sample(Recorder(), shape=(1, K, T), mask=torch.ones(1, 1, T + 1), num_inference_steps=1)
    with pytest.raises(ValueError):
        sample(Recorder(), shape=(2, K, T), context=torch.zeros(3, 2, D), num_inference_steps=1)


def test_real_unet_guided_sampling_is_reproducible():
    torch.manual_seed(0)
    config = UNetConfig(
        latent_channels=K,
        channels=(16, 32),
        factors=(1, 2),
        res_blocks=(1, 1),
        attention=(False, True),
        head_dim=8,
        context_dim=D,
        time_embed_dim=32,
        norm_groups=4,
    )
    unet = OmniUNet1d(config).eval()
    context, context_mask = _context()
    mask = spans_to_mask(T, [(10, T)])
    masked = mask_latent(torch.randn(1, K, T), mask)

    def run(seed: int, guidance: float) -> torch.Tensor:
        return sample(
            unet,
            shape=(2, K, T),
            context=context,
            context_mask=context_mask,
            masked_latent=masked,
            mask=mask,
            causal=True,
            num_inference_steps=2,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed),
        )

    first = run(0, 3.0)
    assert first.shape == (2, K, T) and bool(torch.isfinite(first).all())
    assert torch.equal(first, run(0, 3.0))
    assert not torch.allclose(first, run(1, 3.0))
    # Guidance changes the result (the unconditional branch differs from the conditional one).
    assert not torch.allclose(first, run(0, 1.0))
