"""Guided sampling (§3.2 eq. 4, §5): a diffusers scheduler driving the U-Net, with CFG.

Tasks are conditioned in context only, as the paper trains them: the masked latent and the mask ride
along as input channels and the known frames are not overwritten between steps. The pipeline
splices the known audio back in after decoding.
"""

from __future__ import annotations

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor, nn

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.schedule import make_sampling_scheduler
from jen1cli.progress import ProgressCallback


def _batched(x: Tensor | None, batch: int, name: str) -> Tensor | None:
    """``x`` with its batch dim broadcast from 1 to ``batch`` (or checked to be ``batch``)."""
    if x is None or x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise ValueError(f"{name} has batch {x.shape[0]}, expected {batch} or 1")


def predict_noise(
    unet: nn.Module,
    sample: Tensor,
    timestep: Tensor,
    masked_latent: Tensor,
    mask: Tensor,
    context: Tensor | None,
    context_mask: Tensor | None,
    *,
    causal: bool,
    guidance_scale: float,
) -> Tensor:
    """ε̂ with classifier-free guidance, ε_u + s(ε_c − ε_u), in one forward pass of batch 2B.

    The conditional half has ``use_text`` True, the unconditional half False (its cross-attention
    replaced by self-attention, §5). Without context, or with s = 1, only one branch is run.
    """
    batch = sample.shape[0]
    timestep = timestep.reshape(-1).expand(batch)  # [B]
    if context is None or guidance_scale == 1.0:
        use_text = None
        if context is not None:
            use_text = torch.ones(batch, dtype=torch.bool, device=sample.device)
        return unet(
            sample, timestep, masked_latent, mask, context, context_mask, use_text, causal=causal
        )

    def twice(x: Tensor | None) -> Tensor | None:
        return None if x is None else torch.cat([x, x])

    use_text = torch.arange(2 * batch, device=sample.device) < batch  # [True]*B + [False]*B
    eps = unet(
        twice(sample),
        twice(timestep),
        twice(masked_latent),
        twice(mask),
        twice(context),
        twice(context_mask),
        use_text,
        causal=causal,
    )
    eps_cond, eps_uncond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def _model_dtype_and_device(unet: nn.Module) -> tuple[torch.dtype, torch.device]:
    param = next(unet.parameters(), None)
    if param is None:
        return torch.float32, torch.device("cpu")
    return param.dtype, param.device


@torch.no_grad()
def sample(
    unet: nn.Module,
    *,
    shape: tuple[int, int, int],
    context: Tensor | None = None,
    context_mask: Tensor | None = None,
    masked_latent: Tensor | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
    scheduler: SchedulerMixin | str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    diffusion_config: DiffusionConfig | None = None,
) -> Tensor:
    """Denoise pure noise of ``shape`` [B, k, T] into latents [B, k, T] (float32).

    ``mask`` [B|1, 1, T] marks the frames to generate (1) and ``masked_latent`` [B|1, k, T] holds
    the known ones (``mask_latent``); both default to text-to-music (all generated). ``scheduler``
    is a diffusers scheduler or a name from ``SCHEDULERS``; it and the step count and guidance
    scale default to ``diffusion_config``. The same ``generator`` seed gives the same output.
    """
    config = diffusion_config or DiffusionConfig()
    steps = config.num_inference_steps if num_inference_steps is None else num_inference_steps
    scale = config.guidance_scale if guidance_scale is None else guidance_scale
    if len(shape) != 3:
        raise ValueError(f"shape must be (B, k, T), got {tuple(shape)}")
    if steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
    batch, channels, frames = shape
    dtype, device = _model_dtype_and_device(unet)

    if isinstance(scheduler, SchedulerMixin):
        # A fresh copy: schedulers keep per-run state (step index, multistep history).
        scheduler = type(scheduler).from_config(scheduler.config)
    else:
        scheduler = make_sampling_scheduler(config, scheduler)
    scheduler.set_timesteps(steps, device=device)

    if mask is None:
        mask = torch.ones(1, 1, frames)
    if masked_latent is None:
        masked_latent = torch.zeros(1, channels, frames)
    if mask.shape[1:] != (1, frames) or masked_latent.shape[1:] != (channels, frames):
        raise ValueError(
            f"mask {tuple(mask.shape)} / masked_latent {tuple(masked_latent.shape)} do not fit "
            f"shape {tuple(shape)}"
        )
    mask = _batched(mask.to(device, dtype), batch, "mask")
    masked_latent = _batched(masked_latent.to(device, dtype), batch, "masked_latent")
    if context is not None:
        context = _batched(context.to(device, dtype), batch, "context")
    if context_mask is not None:
        context_mask = _batched(context_mask.to(device), batch, "context_mask")

    # Draw the start on the generator's device so a seed gives the same noise anywhere.
    noise_device = device if generator is None else generator.device
    latents = torch.randn(shape, generator=generator, device=noise_device).to(device)
    latents = latents * scheduler.init_noise_sigma  # [B, k, T], float32 throughout the solver
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latents, t).to(dtype)
        eps = predict_noise(
            unet,
            model_input,
            t,
            masked_latent,
            mask,
            context,
            context_mask,
            causal=causal,
            guidance_scale=scale,
        )
        latents = scheduler.step(eps.float(), t, latents, generator=generator).prev_sample
        if callback is not None:
            callback("denoise", i + 1, steps)
    return latents
