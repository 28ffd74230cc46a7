"""Task masks for in-context learning (§4.3): text-to-music, inpainting and continuation.

Convention everywhere: ``mask`` is [B, 1, T] with 1 = frame to generate, 0 = known frame, and the
U-Net's in-context input is the masked latent ``z * (1 - mask)`` (zeros where generated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import torch
from torch import Tensor

from jen1cli.config import DiffusionConfig


class Task(IntEnum):
    """The three training tasks of §4.3, as stored in :class:`TaskAssignment`."""

    TEXT_TO_MUSIC = 0
    INPAINTING = 1
    CONTINUATION = 2


TASK_NAMES: tuple[str, ...] = ("text_to_music", "inpainting", "continuation")


@dataclass
class TaskAssignment:
    """Which task and which U-Net mode (causal or not) each sample of a training batch gets."""

    task: Tensor  # [B] long, values of Task
    causal: Tensor  # [B] bool: True = unidirectional mode

    def count(self, task: Task) -> int:
        """How many samples of the batch have ``task``."""
        return int((self.task == task).sum())


def _rng(generator: torch.Generator | None) -> dict[str, Any]:
    """Keyword arguments to draw where the generator lives (CUDA ones cannot fill CPU tensors)."""
    return {"generator": generator, "device": "cpu" if generator is None else generator.device}


def split_tasks(batch: int, generator: torch.Generator | None = None) -> TaskAssignment:
    """Give 1/3 of the batch to each task (§4.3, §5) and pick each sample's mode.

    When ``batch`` is not a multiple of 3, the one or two extra samples go to tasks drawn at random,
    so every task gets 1/3 of the samples on average. Text-to-music runs bidirectionally or
    unidirectionally with p = 0.5 (§4.3 trains it in both modes), inpainting is bidirectional and
    continuation unidirectional.
    """
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    base, extra = divmod(batch, 3)
    counts = [base] * 3
    for t in torch.randperm(3, **_rng(generator))[:extra].tolist():
        counts[t] += 1
    task = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    # Shuffle so that no task is tied to a position in the batch.
    task = task[torch.randperm(batch, **_rng(generator)).cpu()]
    coin = torch.rand(batch, **_rng(generator)).cpu() < 0.5
    causal = torch.where(task == Task.TEXT_TO_MUSIC, coin, task == Task.CONTINUATION)
    return TaskAssignment(task=task, causal=causal)


def mask_latent(latents: Tensor, mask: Tensor) -> Tensor:
    """The in-context input: latents [B, k, T] zeroed where mask [B, 1, T] is 1."""
    return latents * (1 - mask.to(latents.dtype))


def text_to_music_mask(batch: int, frames: int, device: torch.device | str | None = None) -> Tensor:
    """The full-size mask of text-to-music (§4.3): every frame generated. Returns [B, 1, T]."""
    return torch.ones(batch, 1, frames, device=device)


def _check_ratios(frames: int, ratio_min: float, ratio_max: float) -> None:
    if frames < 2:
        raise ValueError(f"a partial mask needs at least 2 frames, got {frames}")
    if not 0.0 <= ratio_min <= ratio_max <= 1.0:
        raise ValueError(f"need 0 <= ratio_min <= ratio_max <= 1, got {ratio_min}, {ratio_max}")


def _masked_frames(
    frames: int, ratio_min: float, ratio_max: float, generator: torch.Generator | None
) -> int:
    """Frames to generate for a ratio drawn uniformly in [min, max]; always 1..frames-1."""
    ratio = ratio_min + (ratio_max - ratio_min) * torch.rand((), **_rng(generator)).item()
    # Keep at least one known and one generated frame, or the sample would be another task.
    return min(max(round(ratio * frames), 1), frames - 1)


def _composition(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """``total`` split into ``parts`` positive integers, uniformly over all such splits."""
    cuts = (torch.randperm(total - 1, **_rng(generator))[: parts - 1] + 1).sort().values
    bounds = [0, *cuts.tolist(), total]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def inpainting_mask(
    batch: int,
    frames: int,
    ratio_min: float = 0.2,
    ratio_max: float = 0.8,
    max_spans: int = 3,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Inpainting masks (§4.3): 1..max_spans spans covering a ratio in [min, max]. [B, 1, T]."""
    _check_ratios(frames, ratio_min, ratio_max)
    if max_spans < 1:
        raise ValueError(f"max_spans must be >= 1, got {max_spans}")
    mask = torch.zeros(batch, 1, frames)
    for b in range(batch):
        masked = _masked_frames(frames, ratio_min, ratio_max, generator)
        known = frames - masked
        # Each span needs a frame, and n spans need n - 1 known frames between them to stay apart.
        most = min(max_spans, masked, known + 1)
        spans = int(torch.randint(1, most + 1, (), **_rng(generator)))
        lengths = _composition(masked, spans, generator)
        # Known frames around the spans: n + 1 gaps, the inner ones >= 1, the outer ones >= 0.
        # Draw them as a composition of (free + n + 1) into positive parts, minus one each.
        free = known - (spans - 1)
        gaps = [g - 1 for g in _composition(free + spans + 1, spans + 1, generator)]
        for i in range(1, spans):
            gaps[i] += 1
        pos = gaps[0]
        for length, gap in zip(lengths, gaps[1:], strict=True):
            mask[b, 0, pos : pos + length] = 1.0
            pos += length + gap
    return mask.to(device)


def continuation_mask(
    batch: int,
    frames: int,
    ratio_min: float = 0.2,
    ratio_max: float = 0.8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Right-only continuation masks (§4.3): a suffix covering a ratio in [min, max]. [B, 1, T]."""
    _check_ratios(frames, ratio_min, ratio_max)
    mask = torch.zeros(batch, 1, frames)
    for b in range(batch):
        masked = _masked_frames(frames, ratio_min, ratio_max, generator)
        mask[b, 0, frames - masked :] = 1.0
    return mask.to(device)


def task_masks(
    assignment: TaskAssignment,
    frames: int,
    config: DiffusionConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Each sample's mask for its task, with the ratios of ``config``. Returns [B, 1, T]."""
    batch = assignment.task.shape[0]
    mask = text_to_music_mask(batch, frames)
    inpaint = assignment.task == Task.INPAINTING
    if inpaint.any():
        mask[inpaint] = inpainting_mask(
            int(inpaint.sum()),
            frames,
            config.mask_ratio_min,
            config.mask_ratio_max,
            config.max_inpaint_spans,
            generator,
        )
    cont = assignment.task == Task.CONTINUATION
    if cont.any():
        mask[cont] = continuation_mask(
            int(cont.sum()), frames, config.mask_ratio_min, config.mask_ratio_max, generator
        )
    return mask.to(device)


def spans_to_mask(
    frames: int, spans: Sequence[tuple[int, int]], device: torch.device | str | None = None
) -> Tensor:
    """A mask from user-given half-open frame spans [start, end) to generate. Returns [1, 1, T]."""
    if not spans:
        raise ValueError("need at least one span to generate")
    mask = torch.zeros(1, 1, frames, device=device)
    for start, end in spans:
        if not 0 <= start < end <= frames:
            raise ValueError(f"span ({start}, {end}) is empty or outside 0..{frames}")
        mask[..., start:end] = 1.0
    return mask
