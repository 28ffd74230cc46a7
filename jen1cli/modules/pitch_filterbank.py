"""A pitch-aware spectral front end: log band energies on a musical frequency scale.

Why not mel: mel is nearly linear below 700 Hz, so 64 mel bands give ~35 Hz per band where the
notes of bass and accompaniment lie (a semitone at 200 Hz is 12 Hz), and chords blur. This scale,
``s(f) = log2(1 + f / knee)``, is logarithmic (equal-tempered) down to the knee (~50 Hz) and
coarser again above ``top_hz``, where timbre needs fewer bands than pitch. Bands are triangles on
that scale.

Low bands are narrower than a 2048-point STFT bin, so each band is read from the shortest of
several analysis windows whose bins still resolve it: long windows for the bass, short ones (good
timing) for everything above. Energies are window-normalised so the resolutions agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def scale_density(freqs: np.ndarray, knee_hz: float, top_hz: float, top_ratio: float) -> np.ndarray:
    """d s / d f of the pitch scale: 1 / ((knee + f) ln 2), divided by ``top_ratio`` above top."""
    density = 1.0 / ((knee_hz + freqs) * math.log(2.0))
    return np.where(freqs > top_hz, density / top_ratio, density)


def band_edges(
    num_bands: int,
    sample_rate: int,
    knee_hz: float = 50.0,
    top_hz: float = 5000.0,
    top_ratio: float = 4.0,
    min_hz: float = 20.0,
) -> np.ndarray:
    """``num_bands + 2`` edge frequencies (Hz), equally spaced on the pitch scale."""
    grid = np.linspace(0.0, sample_rate / 2, 200_001)
    density = scale_density(grid, knee_hz, top_hz, top_ratio)
    scale = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    lo = np.interp(min_hz, grid, scale)
    points = np.linspace(lo, scale[-1], num_bands + 2)
    return np.interp(points, scale, grid)


def triangle_weights(edges: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """[bands, bins] triangles (peak 1 at each centre) evaluated at ``freqs``.

    A band narrower than the bin spacing would miss every bin; it then takes its nearest bin, so no
    band is ever empty.
    """
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    f = freqs[None, :]
    rise = (f - lower) / np.maximum(centre - lower, 1e-9)
    fall = (upper - f) / np.maximum(upper - centre, 1e-9)
    weights = np.clip(np.minimum(rise, fall), 0.0, None)
    for b in np.flatnonzero(weights.sum(axis=1) <= 0):
        weights[b, np.argmin(np.abs(freqs - centre[b, 0]))] = 1.0
    return weights


class PitchFilterbank(nn.Module):
    """[B, N] audio -> [B, bands, ceil(N / hop)] natural-log band energies (fixed, no parameters).

    Frame t is centred on sample ``(t + 1/2) * hop``, the middle of the hop it summarises, so a
    latent frame describes its own stretch of audio. ``analysis_ffts`` are tried longest first for
    the low bands: a band uses the first size whose bin spacing is at most a third of its width
    (the last, shortest size takes whatever is left).
    """

    def __init__(
        self,
        num_bands: int,
        sample_rate: int,
        hop_length: int,
        analysis_ffts: tuple[int, ...] = (8192, 2048),
        knee_hz: float = 50.0,
        top_hz: float = 5000.0,
        top_ratio: float = 4.0,
        floor: float = 1e-11,  # -100 dB of a full-scale sine: below 16-bit noise
    ) -> None:
        super().__init__()
        self.hop_length = hop_length
        self.floor = floor
        self.analysis_ffts = tuple(sorted(analysis_ffts, reverse=True))
        edges = band_edges(num_bands, sample_rate, knee_hz, top_hz, top_ratio)
        self.register_buffer("edges", torch.tensor(edges, dtype=torch.float64), persistent=False)
        width = edges[2:] - edges[:-2]
        # Longest first, then every shorter size whose bins still resolve the band takes it over.
        owner = np.full(num_bands, 0)
        for i, n_fft in enumerate(self.analysis_ffts):
            owner = np.where(sample_rate / n_fft <= width / 3, i, owner)
        for i, n_fft in enumerate(self.analysis_ffts):
            freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
            w = triangle_weights(edges, freqs) * (owner == i)[:, None]
            self.register_buffer(
                f"weights_{i}", torch.tensor(w, dtype=torch.float32), persistent=False
            )
            # device="cpu": under torch.device("meta") (model folders are checked that way) torch's
            # window goes through its decompositions, whose first use imports ~1.2 s of modules.
            window = torch.hann_window(n_fft, device="cpu")
            self.register_buffer(f"window_{i}", window, persistent=False)
        self.register_buffer("owner", torch.tensor(owner), persistent=False)

    @property
    def num_bands(self) -> int:
        return self.edges.shape[0] - 2

    def power(self, audio: Tensor) -> Tensor:
        """[B, N] -> [B, bands, ceil(N / hop)] band energies (linear power)."""
        frames = math.ceil(audio.shape[-1] / self.hop_length)
        total = 0.0
        for i, n_fft in enumerate(self.analysis_ffts):
            window = getattr(self, f"window_{i}")
            # Centre frame t on (t + 1/2) hop: pad n_fft/2 - hop/2 on the left, enough on the right.
            left = n_fft // 2 - self.hop_length // 2
            right = frames * self.hop_length - audio.shape[-1] + n_fft - left
            x = _pad(audio, left, right)
            spec = torch.stft(
                x, n_fft, self.hop_length, window=window, center=False, return_complex=True
            )[..., :frames]
            power = spec.real.square() + spec.imag.square()  # [B, bins, T]
            # Parseval: a tone's energy summed over its main lobe is n_fft * sum(w^2) * power, and
            # so is noise's summed over a band; dividing by both makes every resolution agree.
            power = power / (n_fft * window.square().sum())
            total = total + getattr(self, f"weights_{i}") @ power
        return total

    def forward(self, audio: Tensor) -> Tensor:
        return torch.log(self.power(audio) + self.floor)


def _pad(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the last axis where it is long enough, zero-pad the rest."""
    n = x.shape[-1]
    r_left, r_right = min(left, n - 1), min(right, n - 1)
    x = torch.nn.functional.pad(x[:, None], (r_left, r_right), mode="reflect")[:, 0]
    return torch.nn.functional.pad(x, (left - r_left, right - r_right))
