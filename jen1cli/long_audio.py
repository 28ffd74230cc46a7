"""Whole songs through the autoencoder: chunked encode and decode, kept out of the networks.

The networks never see more than ``chunk + 2 * context`` seconds at once, so memory stays bounded
for a file of any length (descript-audio-codec's ``CodecMixin`` does the same). Every chunk is
processed with ``context`` of real input on both sides and only its middle is kept. For a codec
whose reach is shorter than the context (SEANet with weight norm, the Fourier codec's filterbank
encoder) that equals one-piece processing up to float rounding. Decoded chunks also meet in a short
crossfade: the identity where neighbours agree, and a level-preserving blend where they do not (a
Griffin-Lim decoder whose initial phase depends on the decoded piece gives each chunk other phases).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from jen1cli.progress import ProgressCallback, no_progress

Codec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Chunking:
    """How long audio is cut for the codec (seconds of audio)."""

    chunk_seconds: float = 30.0  # kept per chunk; ~1 GB of activations for the bundled codec
    # Input seen on each side of a chunk. Generous: a Griffin-Lim decoder's reach grows with its
    # iterations (measured: 2.6 s for 32 iterations of a 4096-point STFT), a SEANet's is < 0.1 s.
    context_seconds: float = 4.0
    fade_seconds: float = 0.25  # crossfade where two decoded chunks meet

    def frames(self, frame_rate: float) -> tuple[int, int]:
        """(chunk, context) in latent frames at ``frame_rate``."""
        chunk = max(1, round(self.chunk_seconds * frame_rate))
        return chunk, max(0, round(self.context_seconds * frame_rate))

    def fade_samples(self, sample_rate: int, frame_rate: float) -> int:
        """The crossfade, at most the context (both chunks must cover it) and half a chunk."""
        chunk, context = self.frames(frame_rate)
        hop = sample_rate / frame_rate
        limit = min(context, chunk / 2) * hop
        return int(min(round(self.fade_seconds * sample_rate), limit)) // 2 * 2


def chunk_bounds(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut into consecutive [a, b) of ``size`` (the last one may be shorter)."""
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def encode_in_chunks(
    encode: Codec,
    audio: Tensor,
    hop: int,
    chunk_frames: int,
    context_frames: int,
    callback: ProgressCallback = no_progress,
) -> Tensor:
    """``encode`` (audio [B, C, n] -> [B, D, ceil(n / hop)]) applied to [B, C, N] chunk by chunk.

    Chunks start on frame boundaries, so frame t of a chunk is frame ``lo + t`` of the whole.
    """
    n = audio.shape[-1]
    bounds = chunk_bounds(0, math.ceil(n / hop), chunk_frames)
    if len(bounds) == 1:
        callback("encode", 0, 1)
        latents = encode(audio)
        callback("encode", 1, 1)
        return latents
    total = bounds[-1][1]
    parts = []
    for i, (a, b) in enumerate(bounds):
        callback("encode", i, len(bounds))
        lo, hi = max(0, a - context_frames), min(total, b + context_frames)
        parts.append(encode(audio[..., lo * hop : min(n, hi * hop)])[..., a - lo : b - lo])
    callback("encode", len(bounds), len(bounds))
    return torch.cat(parts, dim=-1)


def decode_in_chunks(
    decode: Codec,
    latents: Tensor,
    start: int,
    stop: int,
    hop: int,
    chunk_frames: int,
    context_frames: int,
    fade: int,
    align: int = 1,
    callback: ProgressCallback = no_progress,
) -> Tensor:
    """Samples [start, stop) of ``decode(latents)`` [B, C, T * hop], decoded chunk by chunk.

    Each chunk's frames are decoded with ``context_frames`` of latent on both sides (its start
    rounded down to a multiple of ``align`` frames, for decoders whose output depends on the frame
    index modulo it) and neighbours meet in a crossfade of ``fade`` samples.
    """
    total = latents.shape[-1]
    bounds = chunk_bounds(start // hop, math.ceil(stop / hop), chunk_frames)
    out: Tensor | None = None
    pending: Tensor | None = None  # the previous chunk's view of the next crossfade
    for i, (a, b) in enumerate(bounds):
        callback("decode", i, len(bounds))
        lo = max(0, a - context_frames)
        lo -= lo % align
        hi = min(total, b + context_frames)
        piece = decode(latents[..., lo:hi])  # samples [lo * hop, hi * hop)
        if out is None:
            out = piece.new_zeros(*piece.shape[:-1], stop - start)

        def view(s: int, e: int, piece: Tensor = piece, lo: int = lo) -> Tensor:
            return piece[..., s - lo * hop : e - lo * hop]

        # This chunk owns [own_s, own_e); the seams at its ends are shared with its neighbours.
        own_s, own_e = max(start, a * hop), min(stop, b * hop)
        left = _half_fade(a * hop, start, stop, fade) if i > 0 else 0
        right = _half_fade(b * hop, start, stop, fade) if i < len(bounds) - 1 else 0
        out[..., own_s + left - start : own_e - right - start] = view(own_s + left, own_e - right)
        if left:
            seam = slice(own_s - left - start, own_s + left - start)
            out[..., seam] = crossfade(pending, view(own_s - left, own_s + left))
        if right:
            pending = view(own_e - right, own_e + right)
    callback("decode", len(bounds), len(bounds))
    assert out is not None  # stop > start: at least one chunk
    return out


def _half_fade(seam: int, start: int, stop: int, fade: int) -> int:
    """Half the crossfade around a seam at sample ``seam``, kept inside [start, stop)."""
    return min(fade // 2, seam - start, stop - seam)


def crossfade(a: Tensor, b: Tensor) -> Tensor:
    """Fade from ``a`` to ``b`` (both [..., L]), keeping the level whatever their correlation.

    A linear fade, divided by the level it would have for signals of correlation ρ:
    sqrt((1 - u)² + u² + 2ρ u (1 - u)). For ρ = 1 (identical signals) that is exactly linear, so
    agreeing chunks come out unchanged; for ρ = 0 (same sound, other phases) it is equal-power.
    """
    length = a.shape[-1]
    u = (torch.arange(length, device=a.device, dtype=a.dtype) + 0.5) / length
    dims = tuple(range(1, a.ndim))  # one ρ per batch item, over channels and time
    energy = (a.square().sum(dims) * b.square().sum(dims)).sqrt()
    rho = torch.where(energy > 0, (a * b).sum(dims) / energy.clamp_min(1e-30), 1.0).clamp(0, 1)
    rho = rho.reshape(-1, *([1] * (a.ndim - 1)))
    gain = ((1 - u).square() + u.square() + 2 * rho * u * (1 - u)).rsqrt()
    return gain * ((1 - u) * a + u * b)
