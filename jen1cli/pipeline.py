"""Jen1Pipeline: text-to-music, inpainting, continuation and remix on tensors, any length.

Long outputs roll out window by window; long inputs go through the autoencoder in chunks
(long_audio.py); loops close their wrap (loop.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from jen1cli.audio import integrated_loudness, loudness_normalize, splice, true_peak_db
from jen1cli.diffusion.sampling import first_step, sample
from jen1cli.long_audio import Chunking, decode_in_chunks, encode_in_chunks
from jen1cli.loop import LOOP_SEAM_SHARE, close_loop, loop_fade, wrap_indices
from jen1cli.model import Jen1Model
from jen1cli.progress import ProgressCallback, no_progress

# Each rollout window keeps this share of the window as known context for the next one: training
# shows the model known prefixes covering 20-80 % of a window (§4.3); half sits safely inside.
ROLLOUT_CONTEXT = 0.5
# Training masks cover at most 80 % of a window (§4.3): a longer run of frames to regenerate is
# done in steps, like the rollout, instead of in one window with too little known around it.
MAX_MASKED_SHARE = 0.8


def rollout_windows(have: int, total: int, window: int) -> Iterator[tuple[int, int]]:
    """(known context, new) frames of each causal window that extends ``have`` frames to
    ``total``: each adds as many frames as leaves ``ROLLOUT_CONTEXT`` of the window known."""
    while have < total:
        new = min(total - have, window - round(window * ROLLOUT_CONTEXT))
        yield min(have, window - new), new
        have += new


def regeneration_windows(todo: Tensor, window: int) -> Iterator[tuple[int, int, Tensor]]:
    """(start, stop, mask) of the windows that regenerate every frame where ``todo`` [T] is True.

    Left to right; each window generates its still-pending frames (``mask`` [stop - start], True
    there) and takes every other frame as known context. A run of pending frames that fills at
    most ``MAX_MASKED_SHARE`` of a window is centred in one (context on both sides); a longer one
    is done in steps that keep ``ROLLOUT_CONTEXT`` of the window known, as the rollout does.
    """
    pending = todo.clone().bool()
    total = pending.shape[0]
    context = round(window * ROLLOUT_CONTEXT)
    while bool(pending.any()):
        pos = int(pending.nonzero()[0])
        after = (~pending[pos:]).nonzero()
        run = int(after[0]) if len(after) else total - pos  # pending frames from pos on
        if run <= window * MAX_MASKED_SHARE:
            start = pos + run // 2 - window // 2
        else:
            start = pos - context
        start = max(0, min(start, total - window))
        stop = min(total, start + window)
        yield start, stop, pending[start:stop].clone()
        pending[start:stop] = False


@dataclass
class SamplingOptions:
    """How to sample; ``None`` fields take the model config's defaults."""

    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    seed: int = 0
    # Guidance steers away from this text: its states replace the unconditional branch.
    negative_prompt: str | None = None


class Jen1Pipeline:
    """Runs a :class:`Jen1Model` for the three tasks of the paper (and remix) on 48 kHz stereo.

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

    # --- tasks -------------------------------------------------------------------------------
    def generate(
        self,
        prompts: list[str],
        seconds: float,
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        loop: bool = False,
    ) -> Tensor:
        """Text-to-music: one clip [B, C, N] per prompt, N = round(seconds * sample_rate).

        ``loop``: each clip plays end-to-start with no seam (see loop.py).
        """
        options = options or SamplingOptions()
        length = round(seconds * self.sample_rate)
        latents = self._rollout(prompts, None, self.frames_for(length), options, callback)
        if loop:
            latents = self._close_latent_loop(prompts, latents, options, callback)
            return self._decode_loop(latents, length, callback)
        return self.decode(latents, length, callback)

    def inpaint(
        self,
        audio: Tensor,
        spans: list[tuple[float, float]],
        prompt: str = "",
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Regenerate time spans (seconds) of ``audio`` [C, N]; the rest stays sample-exact.

        Audio and spans of any length: a span longer than a window is regenerated in steps.
        """
        options = options or SamplingOptions()
        return self._edit_spans(audio, spans, prompt, options, callback, fade_seconds)

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
        prefix = self.encode(audio[None], callback)
        latents = self._rollout([prompt], prefix, self.frames_for(total), options, callback)
        # The decoder re-renders the input's last `fade` samples too, so the crossfade into the new
        # music sits in the input's final <= 50 ms; everything before it stays sample-exact.
        fade = min(round(fade_seconds * self.sample_rate), n)
        start = n - fade
        generated = torch.zeros(audio.shape[0], total)
        generated[:, start:] = self._decode_span(latents, start, total, callback)[0].cpu()
        extended = torch.cat([audio, generated[:, n:]], dim=-1)
        return splice(extended, generated, [(start, total)], fade)

    def remix(
        self,
        audio: Tensor,
        prompt: str = "",
        strength: float = 0.5,
        spans: list[tuple[float, float]] | None = None,
        options: SamplingOptions | None = None,
        callback: ProgressCallback = no_progress,
        fade_seconds: float = 0.02,
    ) -> Tensor:
        """Audio-to-audio: ``audio`` [C, N] re-imagined with the prompt, the same length.

        The latent is noised to the step that ``strength`` (0-1) names and denoised from there,
        bidirectionally (SDEdit): at 0 the input comes back as it is, at 1 only its length is
        kept; the lower, the more of its form survives. The result keeps the input's loudness.
        With ``spans`` (seconds) only those are remixed, the rest stays sample-exact (as inpaint).
        """
        if not 0.0 <= strength <= 1.0:  # also refuses NaN
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        options = options or SamplingOptions()
        steps = options.steps or self.config.diffusion.num_inference_steps
        if first_step(strength, steps) == steps:  # no step to run: nothing changes
            return audio.clone()
        if spans is not None:
            return self._edit_spans(
                audio, spans, prompt, options, callback, fade_seconds, strength, keep_loudness=True
            )
        latents = self.encode(audio[None], callback)
        everything = torch.ones(latents.shape[-1], dtype=torch.bool)
        latents = self._regenerate([prompt], latents, everything, options, callback, strength)
        remixed = self.decode(latents, audio.shape[-1], callback)[0].cpu()
        return match_loudness(remixed, audio, self.sample_rate)

    # --- internals ---------------------------------------------------------------------------
    def _edit_spans(
        self,
        audio: Tensor,
        spans: list[tuple[float, float]],
        prompt: str,
        options: SamplingOptions,
        callback: ProgressCallback,
        fade_seconds: float,
        strength: float = 1.0,
        keep_loudness: bool = False,
    ) -> Tensor:
        """Inpaint (strength 1) or remix the time spans of ``audio`` [C, N]; splice them in."""
        n = audio.shape[-1]
        sample_spans = [
            (round(s * self.sample_rate), min(n, round(e * self.sample_rate))) for s, e in spans
        ]
        sample_spans = [(s, e) for s, e in sample_spans if s < e]
        latents = self.encode(audio[None], callback)  # [1, k, T]
        todo = torch.zeros(latents.shape[-1], dtype=torch.bool)
        for s, e in sample_spans:
            todo[s // self.hop_length : self.frames_for(e)] = True
        latents = self._regenerate([prompt], latents, todo, options, callback, strength)
        decoded = torch.zeros_like(audio)
        for s, e in sample_spans:
            span = self._decode_span(latents, s, e)[0].cpu()
            if keep_loudness:
                span = match_loudness(span, audio[..., s:e], self.sample_rate)
            decoded[..., s:e] = span
        fade = round(fade_seconds * self.sample_rate)
        return splice(audio, decoded, sample_spans, fade)

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

    def _close_latent_loop(
        self,
        prompts: list[str],
        latents: Tensor,
        options: SamplingOptions,
        callback: ProgressCallback,
    ) -> Tensor:
        """Wrap-around inpainting: the frames around the end-to-start wrap of ``latents``
        [B, k, T] regenerated with both sides known, so the music runs on across it."""
        total = latents.shape[-1]
        shift = total // 2  # rolled by half, the wrap sits in the middle
        half = max(1, round(min(total, self.window_frames) * LOOP_SEAM_SHARE / 2))
        todo = torch.zeros(total, dtype=torch.bool)
        todo[max(0, shift - half) : shift + half] = True
        rolled = latents.roll(shift, dims=-1)
        return self._regenerate(prompts, rolled, todo, options, callback).roll(-shift, dims=-1)

    def _decode_loop(self, latents: Tensor, length: int, callback: ProgressCallback) -> Tensor:
        """A circular latent [B, k, T] -> a loop [B, C, length] (see loop.py)."""
        fade = loop_fade(length, self.sample_rate)
        _, context = self.chunking.frames(self.frame_rate)
        total = latents.shape[-1]
        after = self.frames_for(length + fade) - total + context
        padded = latents[..., wrap_indices(total, context, after, latents.device)]
        start = context * self.hop_length
        audio = self._decode_span(padded, start, start + length + fade, callback)
        return close_loop(audio, length, fade)

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
        init: Tensor | None = None,
        strength: float = 1.0,
    ) -> Tensor:
        """One window of guided sampling; the known frames are conditioned on in context (§4.2).

        ``init`` and ``strength`` < 1: start from ``init`` noised to that strength (remix).
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
            init_latents=init,
            strength=strength,
            **negative,
        )


def match_loudness(audio: Tensor, reference: Tensor, sample_rate: int) -> Tensor:
    """``audio`` [C, N] brought to the integrated loudness of ``reference`` [C, M].

    Its true peak stays at most the reference's (or -1 dBFS, if higher). A silent reference
    leaves ``audio`` as it is.
    """
    target = integrated_loudness(reference, sample_rate)
    if not math.isfinite(target) or target < -70.0:
        return audio
    ceiling = max(-1.0, true_peak_db(reference, sample_rate))
    with warnings.catch_warnings():  # an unreachable target: the peak ceiling wins, as it should
        warnings.simplefilter("ignore")
        return loudness_normalize(audio, sample_rate, target, true_peak_db=ceiling)
