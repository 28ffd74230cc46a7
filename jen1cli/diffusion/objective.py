"""The multi-task training objective (§3.2 eq. 5, §4.3, §5): one ε-MSE over a mixed batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.noise_schedule import NoiseSchedule
from jen1cli.diffusion.tasks import (
    TASK_NAMES,
    Task,
    TaskAssignment,
    mask_latent,
    split_tasks,
    task_masks,
)


@dataclass
class LossOutput:
    """The loss to backpropagate plus detached per-task values for logging."""

    loss: Tensor  # scalar
    per_task: dict[str, float] = field(default_factory=dict)  # task name -> mean ε-MSE
    assignment: TaskAssignment | None = None


def diffusion_loss(
    unet: nn.Module,
    latents: Tensor,
    context: Tensor | None,
    context_mask: Tensor | None,
    noise_scheduler: NoiseSchedule,
    config: DiffusionConfig,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """JEN-1's training loss for clean latents [B, k, T] and text states [B, L, D] (or None).

    Each sample gets a task and a mode (``split_tasks``), its mask and masked latent, a timestep
    t ~ U{0, …, T−1}, noise ε and z_t = ``noise_scheduler.add_noise``. With probability
    ``config.cond_drop_prob`` a sample's text is dropped (``use_text`` False: cross-attention
    becomes self-attention, §5), which trains the unconditional branch of classifier-free guidance.
    """
    batch, _, frames = latents.shape
    device = latents.device
    assignment = split_tasks(batch, generator)
    mask = task_masks(assignment, frames, config, generator, device=device).to(latents.dtype)
    masked = mask_latent(latents, mask)  # [B, k, T]
    # Draw on the generator's device (reproducible for a seed), then move to the latents'.
    rng = {"generator": generator, "device": device if generator is None else generator.device}
    num_steps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, num_steps, (batch,), **rng).to(device)  # [B]
    noise = torch.randn(latents.shape, **rng).to(device, latents.dtype)  # ε [B, k, T]
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)  # z_t [B, k, T]
    drop = torch.rand(batch, **rng).to(device) < config.cond_drop_prob  # [B]
    use_text = None if context is None else ~drop

    # A forward pass runs in one mode, so the batch is split into its bidirectional and its
    # unidirectional samples: at most two passes, whose outputs are put back in batch order.
    eps_hat: Tensor | None = None  # [B, k, T], in the U-Net's output dtype (autocast: fp32)
    causal_flags = assignment.causal.to(device)
    for causal in (False, True):
        rows = (causal_flags == causal).nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            continue
        out = unet(
            noisy[rows],
            timesteps[rows],
            masked[rows],
            mask[rows],
            None if context is None else context[rows],
            None if context_mask is None else context_mask[rows],
            None if use_text is None else use_text[rows],
            causal=causal,
        )
        if eps_hat is None:
            eps_hat = out.new_empty(noisy.shape)
        eps_hat[rows] = out
    assert eps_hat is not None  # every sample is in one of the two groups

    # Which frames the loss covers (the paper is silent). By default all frames, as eq. 5 reads:
    # at sampling time the scheduler steps the known frames with the model's ε̂ too, and in the
    # causal mode the generated frames read those noisy known frames as left context, so an
    # untrained ε̂ there would drive them off the training distribution. The known frames are
    # easier (the clean latent sits in the in-context channels), so ``known_frames_loss_weight``
    # < 1 lets a run spend more of the gradient on the generated frames; the weighted mean keeps
    # the loss on the same scale.
    squared = (eps_hat.float() - noise.float()) ** 2  # [B, k, T]
    weight = mask.float() + config.known_frames_loss_weight * (1 - mask.float())  # [B, 1, T]
    weight = weight.expand_as(squared)
    weighted = squared * weight
    per_sample = weighted.sum(dim=(1, 2)) / weight.sum(dim=(1, 2))  # [B]
    # Uniform weighting keeps the paper's loss exactly: the mean over every weighted element.
    loss = (
        weighted.sum() / weight.sum()
        if config.loss_weighting == "uniform"
        else (per_sample * timestep_weights(noise_scheduler, timesteps, config)).mean()
    )

    per_sample = per_sample.detach()  # the logged figures stay plain ε-MSE, comparable across runs
    present = [t for t in Task if assignment.count(t) > 0]
    task_ids = assignment.task.to(device)
    means = torch.stack([per_sample[task_ids == t].mean() for t in present]).tolist()  # one sync
    per_task = {TASK_NAMES[t]: m for t, m in zip(present, means, strict=True)}
    return LossOutput(loss=loss, per_task=per_task, assignment=assignment)


def timestep_weights(
    noise_scheduler: NoiseSchedule, timesteps: Tensor, config: DiffusionConfig
) -> Tensor:
    """Per-sample loss weights [B] for ``config.loss_weighting`` (float32).

    min-SNR-γ for ε-prediction: w(t) = min(SNR(t), γ) / SNR(t), SNR = ᾱ / (1 − ᾱ). High-noise
    steps (SNR < γ) keep weight 1; the nearly clean ones, whose ε is easy to read off z_t but
    whose gradients conflict with the others', are turned down (Hang et al. 2023).
    """
    if config.loss_weighting == "uniform":
        return torch.ones(timesteps.shape, device=timesteps.device)
    if config.loss_weighting != "min_snr":
        raise ValueError(
            f"unknown loss_weighting {config.loss_weighting!r}: choose uniform or min_snr"
        )
    if config.min_snr_gamma <= 0:
        raise ValueError(f"min_snr_gamma must be positive, got {config.min_snr_gamma}")
    alphas = noise_scheduler.alphas_cumprod.to(timesteps.device, torch.float64)[timesteps]
    snr = alphas / (1 - alphas)
    return (snr.clamp(max=config.min_snr_gamma) / snr).float()
