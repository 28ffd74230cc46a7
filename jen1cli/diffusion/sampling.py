"""Guided sampling (§3.2 eq. 4, §5): a sampler (``samplers.py``) driving the U-Net, with CFG.

Tasks are conditioned in context only, as the paper trains them: the masked latent and the mask ride
along as input channels and the known frames are not overwritten between steps. The pipeline
splices the known audio back in after decoding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.samplers import Sampler
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
    negative_context: Tensor | None = None,
    negative_context_mask: Tensor | None = None,
) -> Tensor:
    """ε̂ with classifier-free guidance, ε_u + s(ε_c − ε_u), in one forward pass of batch 2B.

    The conditional half has ``use_text`` True, the unconditional half False (its cross-attention
    replaced by self-attention, §5). With a ``negative_context`` [B, L', D] the second half attends
    to it instead, so guidance steers away from that text. Without context, or with s = 1, only the
    conditional branch is run.
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

    if negative_context is None:
        use_text = torch.arange(2 * batch, device=sample.device) < batch  # [True]*B + [False]*B
        contexts, context_masks = twice(context), twice(context_mask)
    else:  # both halves attend to text: the negative prompt's states replace the uncond branch
        use_text = None
        contexts, context_masks = _stack_contexts(
            context, context_mask, negative_context, negative_context_mask
        )
    eps = unet(
        twice(sample),
        twice(timestep),
        twice(masked_latent),
        twice(mask),
        contexts,
        context_masks,
        use_text,
        causal=causal,
    )
    eps_cond, eps_uncond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def _stack_contexts(
    context: Tensor, mask: Tensor | None, other: Tensor, other_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """[2B, max(L, L'), D] states and [2B, max(L, L')] mask: ``context`` then ``other``, both
    padded with masked-out tokens to the longer of the two."""

    def padded(x: Tensor, m: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
        if m is None:
            m = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        extra = length - x.shape[1]
        x = torch.cat([x, x.new_zeros(x.shape[0], extra, x.shape[2])], dim=1)
        return x, torch.cat([m.bool(), m.new_zeros(m.shape[0], extra, dtype=torch.bool)], dim=1)

    length = max(context.shape[1], other.shape[1])
    (a, a_mask), (b, b_mask) = padded(context, mask, length), padded(other, other_mask, length)
    return torch.cat([a, b]), torch.cat([a_mask, b_mask])


def first_step(strength: float, steps: int) -> int:
    """Index of the first of ``steps`` timesteps that a partial denoise of ``strength`` runs.

    Strength 1 runs them all (from pure noise), 0 none (the start is returned as it is), in
    between the start is noised to that timestep and denoised from there (SDEdit, Meng et al.).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    # Counted as diffusers' img2img counts (steps run = int(strength * steps)): written as
    # int((1 - strength) * steps), float rounding would turn 0.9 of 10 steps into all 10.
    return steps - min(int(strength * steps), steps)


def _start_latents(init_latents: Tensor | None, shape: tuple[int, int, int]) -> Tensor:
    """``init_latents`` broadcast to ``shape``; a partial denoise needs them."""
    if init_latents is None:
        raise ValueError("strength < 1 denoises from init_latents: pass them")
    if tuple(init_latents.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"init_latents {tuple(init_latents.shape)} do not fit {tuple(shape)}")
    return _batched(init_latents, shape[0], "init_latents")


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
    scheduler: Sampler | str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    diffusion_config: DiffusionConfig | None = None,
    negative_context: Tensor | None = None,
    negative_context_mask: Tensor | None = None,
    init_latents: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Denoise pure noise of ``shape`` [B, k, T] into latents [B, k, T] (float32).

    ``mask`` [B|1, 1, T] marks the frames to generate (1) and ``masked_latent`` [B|1, k, T] holds
    the known ones (``mask_latent``); both default to text-to-music (all generated). ``scheduler``
    is a :class:`Sampler` or a name from ``SCHEDULERS``; it and the step count and guidance
    scale default to ``diffusion_config``. The same ``generator`` seed gives the same output.
    ``negative_context`` [B|1, L', D] (and its mask) takes the unconditional branch's place in
    guidance. With ``init_latents`` [B|1, k, T] and ``strength`` < 1 the start is those latents
    noised to the timestep of :func:`first_step` instead of pure noise (audio-to-audio).
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

    if isinstance(scheduler, Sampler):
        # A fresh copy: samplers keep per-run state (step index, multistep history).
        scheduler = type(scheduler)(scheduler.config)
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
    if negative_context is not None:
        negative_context = _batched(negative_context.to(device, dtype), batch, "negative_context")
    if negative_context_mask is not None:
        negative_context_mask = _batched(
            negative_context_mask.to(device), batch, "negative_context_mask"
        )

    # Draw the start on the generator's device so a seed gives the same noise anywhere.
    noise_device = device if generator is None else generator.device
    latents = torch.randn(shape, generator=generator, device=noise_device).to(device)
    start = first_step(strength, steps)
    timesteps = scheduler.timesteps[start:]
    if start == 0:
        latents = latents * scheduler.init_noise_sigma  # [B, k, T], float32 throughout the solver
    else:
        clean = _start_latents(init_latents, shape).to(device, torch.float32)
        if not len(timesteps):
            return clean.clone()
        scheduler.set_begin_index(start)  # the multistep solver counts its history from here
        latents = scheduler.add_noise(clean, latents)
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents).to(dtype)
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
            negative_context=negative_context,
            negative_context_mask=negative_context_mask,
        )
        latents = scheduler.step(eps.float(), latents)
        if callback is not None:
            callback("denoise", i + 1, len(timesteps))
    return latents
