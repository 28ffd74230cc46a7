"""The multi-task objective: groups by mode, condition dropout, a trainable ε-MSE."""

import dataclasses

import torch
from torch import nn

from jen1cli.config import DiffusionConfig, UNetConfig
from jen1cli.diffusion.objective import diffusion_loss
from jen1cli.diffusion.schedule import make_noise_scheduler
from jen1cli.diffusion.tasks import TASK_NAMES, Task
from jen1cli.modules.unet import OmniUNet1d

K, T, D = 4, 24, 8


class TinyDenoiser(nn.Module):
    """OmniUNet1d's signature on a conv; records what every call received."""

    def __init__(self, k: int = K, context_dim: int = D) -> None:
        super().__init__()
        # Inputs: x_t, masked latent, mask, and x_t * t / 1000 so ε can depend on the noise level.
        self.conv = nn.Conv1d(3 * k + 1, k, 3, padding=1)
        self.text = nn.Linear(context_dim, k)
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
                "causal": causal,
                "use_text": None if use_text is None else use_text.clone(),
                "mask": mask.clone(),
                "masked_latent": masked_latent.clone(),
                "context": context,
            }
        )
        level = (timestep.float() / 1000).view(-1, 1, 1)
        h = self.conv(torch.cat([sample, masked_latent, mask, sample * level], dim=1))
        if context is not None:
            h = h + (self.text(context.mean(1)) * use_text[:, None].float())[..., None]
        return h


def _batch(b: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.rand(b, K, T, generator=gen) + 1.0  # strictly positive: zeros come from masks
    context = torch.randn(b, 5, D, generator=gen)
    context_mask = torch.ones(b, 5, dtype=torch.bool)
    return latents, context, context_mask


def test_groups_run_once_per_mode_with_their_masks():
    config = DiffusionConfig()
    unet = TinyDenoiser()
    latents, context, context_mask = _batch()
    out = diffusion_loss(
        unet,
        latents,
        context,
        context_mask,
        make_noise_scheduler(config),
        config,
        torch.Generator().manual_seed(0),
    )
    a = out.assignment
    assert [c["causal"] for c in unet.calls] == [False, True]  # one pass per mode
    bi, uni = unet.calls
    assert bi["batch"] == int((~a.causal).sum()) and uni["batch"] == int(a.causal.sum())
    assert bi["batch"] + uni["batch"] == latents.shape[0]
    for call in unet.calls:
        gen = call["mask"].expand(-1, K, -1) == 1
        # The in-context input is zero exactly where the frames are generated.
        assert torch.equal(call["masked_latent"] == 0, gen)
    # Unidirectional samples are text-to-music (all ones) or continuation (a suffix);
    # bidirectional partial masks are inpainting.
    for row in uni["mask"][:, 0]:
        first = int(row.argmax())
        assert bool((row[first:] == 1).all()) and bool((row[:first] == 0).all())
    n_partial_bi = int((bi["mask"].mean(dim=(1, 2)) < 1).sum())
    assert n_partial_bi == a.count(Task.INPAINTING)


def test_condition_dropout_rate():
    config = DiffusionConfig()
    scheduler = make_noise_scheduler(config)
    unet = TinyDenoiser()
    latents, context, context_mask = _batch(b=12)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(100):
            diffusion_loss(unet, latents, context, context_mask, scheduler, config, gen)
    flags = torch.cat([c["use_text"] for c in unet.calls])
    assert flags.numel() == 100 * 12
    dropped = 1 - flags.float().mean().item()
    assert abs(dropped - 0.2) < 0.045  # ~4 standard deviations of 1200 draws
    assert all(c["context"] is not None for c in unet.calls)


def test_without_context_no_text_flags():
    config = DiffusionConfig()
    unet = TinyDenoiser()
    latents, _, _ = _batch()
    diffusion_loss(unet, latents, None, None, make_noise_scheduler(config), config)
    assert all(c["use_text"] is None and c["context"] is None for c in unet.calls)


def test_loss_is_a_differentiable_scalar_and_the_mean_of_tasks():
    config = DiffusionConfig()
    unet = TinyDenoiser()
    latents, context, context_mask = _batch(b=9)
    out = diffusion_loss(
        unet,
        latents,
        context,
        context_mask,
        make_noise_scheduler(config),
        config,
        torch.Generator().manual_seed(2),
    )
    assert out.loss.ndim == 0 and out.loss.requires_grad
    out.loss.backward()
    assert unet.conv.weight.grad is not None and unet.conv.weight.grad.abs().sum() > 0
    assert set(out.per_task) == set(TASK_NAMES)
    # Every sample has as many elements, so the batch mean is the count-weighted task mean.
    a = out.assignment
    mean = sum(a.count(t) * out.per_task[TASK_NAMES[t]] for t in Task) / 9
    assert abs(mean - out.loss.item()) < 1e-5


def test_same_generator_same_loss():
    config = DiffusionConfig()
    unet = TinyDenoiser()
    scheduler = make_noise_scheduler(config)
    latents, context, context_mask = _batch()
    losses = [
        diffusion_loss(
            unet,
            latents,
            context,
            context_mask,
            scheduler,
            config,
            torch.Generator().manual_seed(3),
        ).loss.item()
        for _ in range(2)
    ]
    assert losses[0] == losses[1]


class _KnownFramesProbe(nn.Module):
    """Predicts 0 on generated frames and ``value`` on known ones."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, sample, timestep, masked_latent, mask, *args, causal=False):
        return (1 - mask).expand_as(sample) * self.value


def test_known_frames_weight():
    latents, context, context_mask = _batch()

    def loss(weight: float, value: float) -> float:
        config = dataclasses.replace(DiffusionConfig(), known_frames_loss_weight=weight)
        out = diffusion_loss(
            _KnownFramesProbe(value),
            latents,
            context,
            context_mask,
            make_noise_scheduler(config),
            config,
            torch.Generator().manual_seed(4),
        )
        return out.loss.item()

    # Weight 1 (the default): the known frames count; weight 0: they do not.
    assert loss(1.0, 100.0) > 10 * loss(1.0, 0.0)
    assert loss(0.0, 100.0) == loss(0.0, 0.0)


def _train(unet: nn.Module, steps: int, lr: float) -> tuple[float, float]:
    config = DiffusionConfig()
    scheduler = make_noise_scheduler(config)
    latents, context, context_mask = _batch(b=6, seed=5)

    def eval_loss() -> float:
        with torch.no_grad():
            losses = [
                diffusion_loss(
                    unet,
                    latents,
                    context,
                    context_mask,
                    scheduler,
                    config,
                    torch.Generator().manual_seed(100 + i),
                ).loss.item()
                for i in range(4)
            ]
        return sum(losses) / len(losses)

    before = eval_loss()
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(6)
    for _ in range(steps):
        opt.zero_grad()
        diffusion_loss(unet, latents, context, context_mask, scheduler, config, gen).loss.backward()
        opt.step()
    return before, eval_loss()


def test_loss_decreases_when_training_a_tiny_denoiser():
    torch.manual_seed(0)
    before, after = _train(TinyDenoiser(), steps=40, lr=3e-2)
    assert after < 0.7 * before


def _tiny_unet() -> OmniUNet1d:
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
    return OmniUNet1d(config)


def test_real_unet_loss_descends():
    # The real network in both modes: gradients reach every parameter, and a small step along
    # them lowers the loss on the same draws (same seed: same tasks, masks, t and ε).
    unet = _tiny_unet()
    config = DiffusionConfig()
    scheduler = make_noise_scheduler(config)
    latents, context, context_mask = _batch(b=6, seed=5)

    def loss() -> torch.Tensor:
        out = diffusion_loss(
            unet,
            latents,
            context,
            context_mask,
            scheduler,
            config,
            torch.Generator().manual_seed(8),
        )
        assert bool(out.assignment.causal.any()) and not bool(out.assignment.causal.all())
        return out.loss

    before = loss()
    before.backward()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            assert p.grad is not None, name
            p -= 1e-3 * p.grad
        after = loss()
    assert after.item() < before.item()
