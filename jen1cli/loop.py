"""Seamless loops: audio that plays end-to-start with no seam, whatever the decoder.

Three steps, each closing the wrap at one level. The pipeline samples the latent as a circle
(jen1cli/modules/circular_denoiser.py: every denoising step sees the loop's end before its start,
so the music is shaped across the wrap as anywhere else). The latent is decoded with circular
context (its own end before its start, its start after its end), so the decoder sees the wrap as
any other place. And the decoded audio, which runs on past the loop's length, is folded back: its
overhang is crossfaded into the start, so the last sample flows into the first exactly as it
flows into the overhang (`close_loop`). Mastering then runs on a circularly padded copy
(`master_loop`), so its filters and limiter see no edge either.

A loop has no start of its own, so the file begins where the sound is steadiest
(`steadiest_start`), not inside an attack.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from jen1cli.audio import master
from jen1cli.long_audio import crossfade
from jen1cli.modules.circular_denoiser import circular_indices

LOOP_FADE_SECONDS = 0.25  # the overhang folded into the start
MASTER_PADDING_SECONDS = 2.0  # > the DC filter's and the limiter's memory (< 0.2 s)
# Where the file starts: the loop point is put where the spectrum changes least over this span
# around it (a sampler's loop point in the steady part of a sound, not inside an attack).
STEADY_FFT = 1024
STEADY_HOP = 128
STEADY_SPAN_SECONDS = 0.05  # on each side of the loop point


def loop_fade(length: int, sample_rate: int) -> int:
    """The overhang folded back into a loop of ``length`` samples: 0.25 s, at most a quarter."""
    return min(round(LOOP_FADE_SECONDS * sample_rate), length // 4)


def close_loop(audio: Tensor, length: int, fade: int) -> Tensor:
    """A loop [..., length] from ``audio`` [..., length + fade] that runs past its end.

    The first ``fade`` samples fade from the overhang (what follows the loop's last sample) into
    the loop's own start: the wrap last -> first is then the continuous step last -> overhang, and
    the fade ends where the start was anyway. Where the overhang repeats the start (a periodic
    decode) nothing changes.
    """
    if audio.shape[-1] != length + fade:
        raise ValueError(f"need {length + fade} samples, got {audio.shape[-1]}")
    out = audio[..., :length].clone()
    if fade:
        out[..., :fade] = crossfade(audio[..., length:], audio[..., :fade])
    return out


def stretch_loop(audio: Tensor, length: int) -> Tensor:
    """A loop [..., P] resampled to [..., length] as the periodic signal it is (its spectrum cut
    or zero-padded): every partial keeps a whole number of cycles, so it still repeats seamlessly,
    and plays P / length times as fast. Unchanged where P == length."""
    period = audio.shape[-1]
    if period == length:
        return audio
    spectrum = torch.fft.rfft(audio.float(), dim=-1)
    bins = min(spectrum.shape[-1], length // 2 + 1)
    spectrum = spectrum[..., :bins].clone()
    # A Nyquist bin holds its cosine once, any other bin twice (as +f and -f): one that changes
    # role is rescaled, as in scipy.signal.resample.
    if period % 2 == 0 and length > period:
        spectrum[..., period // 2] *= 0.5
    elif length % 2 == 0 and length < period:
        spectrum[..., length // 2] *= 2.0
    return torch.fft.irfft(spectrum, n=length, dim=-1) * (length / period)


def master_loop(audio: Tensor, sample_rate: int, target_lufs: float) -> Tensor:
    """:func:`jen1cli.audio.master` for a loop [C, N]: mastered with its own ends around it, so
    the DC filter and the limiter are in their steady state at the wrap."""
    n = audio.shape[-1]
    pad = round(MASTER_PADDING_SECONDS * sample_rate)
    padded = audio[..., circular_indices(n, pad, pad, audio.device)]
    return master(padded, sample_rate, target_lufs)[..., pad : pad + n].contiguous()


def steadiest_start(audio: Tensor, sample_rate: int) -> int:
    """The sample of a loop [C, N] (circular) where its spectrum changes least: the largest
    spectral flux between ``STEADY_FFT`` frames that overlap the ``STEADY_SPAN_SECONDS`` on each
    side of it (or follow them) is smallest.

    A loop has no start of its own, so its file may begin anywhere; begun here, it does not open
    in the middle of an attack, played once or cut in an editor, and any player whose looping is
    not gapless misses the least. The span keeps the start inside a steady passage rather than at
    its edge, where the minimum of a narrow measure tends to sit, just before the next rise.
    """
    n = audio.shape[-1]
    hop = STEADY_HOP
    margin = round(STEADY_SPAN_SECONDS * sample_rate / hop)  # in hops
    pad = STEADY_FFT + margin * hop
    mono = audio.float().mean(0)[circular_indices(n, pad, pad, audio.device)]
    window = torch.hann_window(STEADY_FFT, device=audio.device)
    spec = torch.stft(mono, STEADY_FFT, hop, window=window, center=False,
                      return_complex=True).abs()  # fmt: skip
    flux = (spec[:, 1:] - spec[:, :-1]).clamp(min=0).sum(0)  # flux[j]: frame j -> j + 1
    # The loop's sample p = i * hop is padded sample p + pad, so frames i + 1 ... i + width - 1
    # overlap [p - margin * hop, p + margin * hop): fluxes i ... i + width - 1 go into, between
    # and out of them.
    width = STEADY_FFT // hop + 2 * margin
    candidates = math.ceil(n / hop)
    score = flux.unfold(0, width, 1)[:candidates].amax(dim=1)
    return int(score.argmin()) * hop
