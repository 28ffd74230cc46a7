"""The sampling code every task shares: latents in and out, one guided window, and the windows.

:class:`PipelineBase` holds the model and does three things the task modules build on:
``encode`` / ``decode`` (through the autoencoder and whitening, chunk by chunk past one chunk,
see long_audio.py), ``_denoise`` (one window of guided sampling with the known frames in context,
§4.2), and the two ways of covering any length with windows: ``_rollout`` (extend causally,
window by window) and ``_regenerate`` (redo the marked frames, bidirectionally).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor

from jen1cli.diffusion.sampling import sample
from jen1cli.long_audio import Chunking, decode_in_chunks, encode_in_chunks
from jen1cli.model import Jen1Model
from jen1cli.pipeline.windows import regeneration_windows, rollout_windows
from jen1cli.progress import ProgressCallback, no_progress


@dataclass
class SamplingOptions:
    """How to sample; ``None`` fields take the model config's defaults."""

    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    seed: int = 0
    # Guidance steers away from this text: its states replace the unconditional branch.
    negative_prompt: str | None = None


class PipelineBase:
    """A :class:`Jen1Model` on a device, with the sampling code the tasks share.

    ``chunking`` sets how audio longer than a chunk is cut for the autoencoder.
    """

    chunking = Chunking()

    def __init__(self, model: Jen1Model, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | torch.device = "cpu", **kwargs
    ) -> Self:
        """Load a model folder or Hub repo id (see :meth:`Jen1Model.from_pretrained`)."""
        return cls(Jen1Model.from_pretrained(name_or_path, **kwargs), device)

    UNET_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def with_unet_dtype(self, name: str) -> Self:
        """Run the U-Net in ``fp32``, ``bf16`` or ``fp16``; returns self.

        Only the U-Net, where nearly all of a generation's FLOPs are: the solver keeps its
        latents in float32 (sampling.py), and the text encoder, whitening and autoencoder stay in
        float32, so the known audio of inpainting and continuation is untouched by rounding.
        """
        self.model.unet.to(self.UNET_DTYPES[name])
        return self

    @property
    def unet_dtype_name(self) -> str:
        dtype = next(self.model.unet.parameters()).dtype
        return {v: k for k, v in self.UNET_DTYPES.items()}[dtype]

    # --- sizes -------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.autoencoder.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.autoencoder.frame_rate

    @property
    def window_frames(self) -> int:
        return self.config.window_frames

    def frames_for(self, n_samples: int) -> int:
        """Latent frames that cover ``n_samples`` audio samples."""
        return math.ceil(n_samples / self.hop_length)

    # --- latents -----------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: Tensor, callback: ProgressCallback = no_progress) -> Tensor:
        """Audio [B, C, N] at the model's rate -> whitened latents [B, k, ceil(N / hop)].

        Any length: past one ``chunking`` chunk the audio is encoded chunk by chunk.
        """
        chunk, context = self.chunking.frames(self.frame_rate)
        return encode_in_chunks(
            self._encode_piece, audio, self.hop_length, chunk, context, callback
        )

    @torch.inference_mode()
    def decode(
        self, latents: Tensor, length: int | None = None, callback: ProgressCallback = no_progress
    ) -> Tensor:
        """Whitened latents [B, k, T] -> audio [B, C, length or T * hop], chunk by chunk."""
        full = latents.shape[-1] * self.hop_length
        length = full if length is None else length
        if not 0 < length <= full:
            raise ValueError(f"length must be in 1..{full} for {latents.shape[-1]} frames")
        return self._decode_span(latents, 0, length, callback)

    def _encode_piece(self, audio: Tensor) -> Tensor:
        z = self.model.autoencoder.encode(audio.to(self.device, torch.float32))
        return self.model.whitener(z)

    def _decode_piece(self, latents: Tensor) -> Tensor:
        z = self.model.whitener.inverse(latents.to(self.device, torch.float32))
        return self.model.autoencoder.decode(z).clamp(-1.0, 1.0)

    @torch.inference_mode()
    def _decode_span(
        self, latents: Tensor, start: int, stop: int, callback: ProgressCallback = no_progress
    ) -> Tensor:
        """Samples [start, stop) of the decoded latents [B, k, T], with context on both sides."""
        chunk, context = self.chunking.frames(self.frame_rate)
        fade = self.chunking.fade_samples(self.sample_rate, self.frame_rate)
        # A decoder whose output depends on the frame index modulo some period (a fixed
        # Griffin-Lim phase table) says so; chunks then start in step with the whole.
        align = getattr(self.model.autoencoder, "frame_alignment", 1)
        return decode_in_chunks(
            self._decode_piece,
            latents,
            start,
            stop,
            self.hop_length,
            chunk,
            context,
            fade,
            align,
            callback,
        )

    # --- windows -----------------------------------------------------------------------------
    def _rollout(
        self,
        prompts: list[str],
        prefix: Tensor | None,
        total_frames: int,
        options: SamplingOptions,
        callback: ProgressCallback,
    ) -> Tensor:
        """Latents [B, k, total_frames], window by window.

        A bidirectional first window (unless a prefix is given), then causal windows, each
        conditioned on the tail of what exists so far.
        """
        window = self.window_frames
        batch = len(prompts)
        k = self.config.unet.latent_channels
        if prefix is None:
            first = min(total_frames, window)
            mask = torch.ones(batch, 1, first, device=self.device)
            zeros = torch.zeros(batch, k, first, device=self.device)
            latents = self._denoise(prompts, zeros, mask, False, options, callback)
        else:
            latents = prefix.expand(batch, -1, -1)
        for context, new in rollout_windows(latents.shape[-1], total_frames, window):
            known = latents[..., latents.shape[-1] - context :]
            masked = torch.cat([known, known.new_zeros(batch, k, new)], dim=-1)
            mask = torch.cat(
                [known.new_zeros(batch, 1, context), known.new_ones(batch, 1, new)], dim=-1
            )
            generated = self._denoise(prompts, masked, mask, True, options, callback)
            latents = torch.cat([latents, generated[..., context:]], dim=-1)
        return latents[..., :total_frames]

    def _regenerate(
        self,
        prompts: list[str],
        latents: Tensor,
        todo: Tensor,
        options: SamplingOptions,
        callback: ProgressCallback,
        strength: float = 1.0,
    ) -> Tensor:
        """``latents`` [B, k, T] with the frames where ``todo`` [T] is True regenerated.

        Bidirectional, window by window, the known frames conditioned on in context (§4.3). With
        ``strength`` < 1 each window starts from its own frames noised to that strength (remix).
        """
        out = latents.clone()
        for start, stop, pending in regeneration_windows(todo, self.window_frames):
            mask = pending.to(self.device, torch.float32)[None, None]  # [1, 1, W]
            window = out[..., start:stop]
            init = window if strength < 1.0 else None
            generated = self._denoise(
                prompts, window * (1 - mask), mask, False, options, callback, init, strength
            )
            out[..., start:stop] = torch.where(mask.bool(), generated, window)
        return out

    # --- one window --------------------------------------------------------------------------
    @torch.inference_mode()
    def _denoise(
        self,
        prompts: list[str],
        masked_latent: Tensor,
        mask: Tensor,
        causal: bool,
        options: SamplingOptions,
        callback: ProgressCallback,
        init: Tensor | None = None,
        strength: float = 1.0,
        denoiser: torch.nn.Module | None = None,
    ) -> Tensor:
        """One window of guided sampling; the known frames are conditioned on in context (§4.2).

        ``init`` and ``strength`` < 1: start from ``init`` noised to that strength (remix).
        ``denoiser``: the U-Net wrapped (a loop's CircularDenoiser) instead of the U-Net itself.
        """
        diffusion = self.config.diffusion
        context, context_mask = self.model.text_encoder(prompts)
        negative = {}
        if options.negative_prompt is not None:
            states, states_mask = self.model.text_encoder([options.negative_prompt] * len(prompts))
            negative = {
                "negative_context": states.to(self.device),
                "negative_context_mask": states_mask.to(self.device),
            }
        generator = torch.Generator("cpu").manual_seed(options.seed)
        return sample(
            self.model.unet if denoiser is None else denoiser,
            shape=tuple(masked_latent.shape),
            context=context.to(self.device),
            context_mask=context_mask.to(self.device),
            masked_latent=masked_latent,
            mask=mask,
            causal=causal,
            scheduler=options.scheduler or diffusion.scheduler,
            num_inference_steps=options.steps or diffusion.num_inference_steps,
            guidance_scale=diffusion.guidance_scale
            if options.guidance_scale is None
            else options.guidance_scale,
            generator=generator,
            callback=callback,
            diffusion_config=diffusion,
            init_latents=init,
            strength=strength,
            **negative,
        )
