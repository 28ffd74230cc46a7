"""Jen1Pipeline: text-to-music, inpainting and continuation on tensors, with windowed rollout."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from jen1cli.audio import splice
from jen1cli.diffusion.sampling import sample
from jen1cli.diffusion.tasks import spans_to_mask
from jen1cli.model import Jen1Model
from jen1cli.progress import ProgressCallback, no_progress

# Each rollout window keeps this share of the window as known context for the next one: training
# shows the model known prefixes covering 20-80 % of a window (§4.3); half sits safely inside.
ROLLOUT_CONTEXT = 0.5
# Decoder warm-up before a decoded region, so its first samples see real left context.
DECODE_CONTEXT_SECONDS = 0.5


def rollout_windows(have: int, total: int, window: int) -> Iterator[tuple[int, int]]:
    """(known context, new) frames of each causal window that extends ``have`` frames to
    ``total``: each adds as many frames as leaves ``ROLLOUT_CONTEXT`` of the window known."""
    while have < total:
        new = min(total - have, window - round(window * ROLLOUT_CONTEXT))
        yield min(have, window - new), new
        have += new


@dataclass
class SamplingOptions:
    """How to sample; ``None`` fields take the model config's defaults."""

    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    seed: int = 0


class Jen1Pipeline:
    """Runs a :class:`Jen1Model` for the three tasks of the paper on 48 kHz stereo tensors."""

    def __init__(self, model: Jen1Model, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | torch.device = "cpu", **kwargs
    ) -> Jen1Pipeline:
        """Load a model folder or Hub repo id (see :meth:`Jen1Model.from_pretrained`)."""
        return cls(Jen1Model.from_pretrained(name_or_path, **kwargs), device)

    UNET_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def with_unet_dtype(self, name: str) -> Jen1Pipeline:
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
    def encode(self, audio: Tensor) -> Tensor:
        """Audio [B, C, N] at the model's rate -> whitened latents [B, k, ceil(N / hop)]."""
        z = self.model.autoencoder.encode(audio.to(self.device, torch.float32))
        return self.model.whitener(z)

    @torch.inference_mode()
    def decode(self, latents: Tensor, length: int | None = None) -> Tensor:
        """Whitened latents [B, k, T] -> audio [B, C, length or T * hop]."""
        z = self.model.whitener.inverse(latents.to(self.device, torch.float32))
        return self.model.autoencoder.decode(z, length).clamp(-1.0, 1.0)

    def _decode_region(self, latents: Tensor, start: int, length: int) -> Tensor:
        """Decode samples [start, start + length), with left context for the decoder."""
        context = min(start // self.hop_length, round(DECODE_CONTEXT_SECONDS * self.frame_rate))
        first = start // self.hop_length - context
        last = self.frames_for(start + length)
        audio = self.decode(latents[..., first:last])
        offset = start - first * self.hop_length
        return audio[..., offset : offset + length]

    # --- tasks -------------------------------------------------------------------------------
    def generate(
        self,
        prompts: list[str],
        seconds: float,
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
    ) -> Tensor:
        """Text-to-music: one clip [B, C, N] per prompt, N = round(seconds * sample_rate)."""
        options = options or SamplingOptions()
        length = round(seconds * self.sample_rate)
        latents = self._rollout(prompts, None, self.frames_for(length), options, callback)
        callback("decode", 0, 1)
        audio = self.decode(latents, length)
        callback("decode", 1, 1)
        return audio

    def inpaint(
        self,
        audio: Tensor,
        spans: list[tuple[float, float]],
        prompt: str = "",
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Regenerate time spans (seconds) of ``audio`` [C, N]; the rest stays sample-exact."""
        options = options or SamplingOptions()
        n = audio.shape[-1]
        sample_spans = [
            (round(s * self.sample_rate), min(n, round(e * self.sample_rate))) for s, e in spans
        ]
        latents = self.encode(audio[None])  # [1, k, T]
        total = latents.shape[-1]
        frame_spans = [(s // self.hop_length, self.frames_for(e)) for s, e in sample_spans]
        out = latents.clone()
        for start, stop in _windows_for(frame_spans, total, self.window_frames):
            spans_here = [
                (max(s, start) - start, min(e, stop) - start)
                for s, e in frame_spans
                if s < stop and e > start
            ]
            mask = spans_to_mask(stop - start, spans_here, device=self.device)  # [1, 1, W]
            window = out[..., start:stop]
            generated = self._denoise([prompt], window * (1 - mask), mask, False, options, callback)
            out[..., start:stop] = torch.where(mask.bool(), generated, window)
        decoded = torch.zeros_like(audio)
        for s, e in sample_spans:
            decoded[..., s:e] = self._decode_region(out, s, e - s)[0].cpu()
        fade = round(fade_seconds * self.sample_rate)
        return splice(audio, decoded, sample_spans, fade)

    def continue_(
        self,
        audio: Tensor,
        seconds: float,
        prompt: str = "",
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Return ``audio`` [C, N] then ``seconds`` of new music, rolled out window by window."""
        options = options or SamplingOptions()
        n = audio.shape[-1]
        total = n + round(seconds * self.sample_rate)
        prefix = self.encode(audio[None])
        latents = self._rollout([prompt], prefix, self.frames_for(total), options, callback)
        # The decoder re-renders the input's last `fade` samples too, so the crossfade into the new
        # music sits in the input's final <= 50 ms; everything before it stays sample-exact.
        fade = min(round(fade_seconds * self.sample_rate), n)
        start = n - fade
        callback("decode", 0, 1)
        generated = torch.zeros(audio.shape[0], total)
        generated[:, start:] = self._decode_region(latents, start, total - start)[0].cpu()
        callback("decode", 1, 1)
        extended = torch.cat([audio, generated[:, n:]], dim=-1)
        return splice(extended, generated, [(start, total)], fade)

    # --- internals ---------------------------------------------------------------------------
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

    @torch.inference_mode()
    def _denoise(
        self,
        prompts: list[str],
        masked_latent: Tensor,
        mask: Tensor,
        causal: bool,
        options: SamplingOptions,
        callback: ProgressCallback,
    ) -> Tensor:
        """One window of guided sampling; the known frames are conditioned on in context (§4.2)."""
        diffusion = self.config.diffusion
        context, context_mask = self.model.text_encoder(prompts)
        generator = torch.Generator("cpu").manual_seed(options.seed)
        return sample(
            self.model.unet,
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
        )


def _windows_for(spans: list[tuple[int, int]], total: int, window: int) -> list[tuple[int, int]]:
    """Latent windows [start, stop) that hold every span with context around it.

    A span longer than one window cannot be generated in one pass; callers check that first.
    """
    if total <= window:
        return [(0, total)]
    windows: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if windows and e <= windows[-1][1]:
            continue  # already covered by the previous window
        centre = (s + e) // 2
        start = max(0, min(total - window, centre - window // 2))
        windows.append((start, start + window))
    return windows
