"""Task split and masks (§4.3): 1/3 per task, modes per task, mask ratios and shapes."""

import pytest
import torch

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.tasks import (
    Task,
    continuation_mask,
    inpainting_mask,
    mask_latent,
    spans_to_mask,
    split_tasks,
    task_masks,
    text_to_music_mask,
)


def _spans(row: torch.Tensor) -> list[tuple[int, int]]:
    """The [start, end) runs of ones in a 1D 0/1 tensor."""
    padded = torch.cat([torch.zeros(1), row.float(), torch.zeros(1)])
    edges = padded.diff()
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    return list(zip(starts, ends, strict=True))


@pytest.mark.parametrize("batch", [3, 6, 30])
def test_split_is_exactly_one_third_each_when_divisible(batch):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = split_tasks(batch, gen)
        assert [a.count(t) for t in Task] == [batch // 3] * 3


@pytest.mark.parametrize("batch", [1, 4, 5])
def test_split_remainder_is_unbiased(batch):
    gen = torch.Generator().manual_seed(1)
    draws = 900
    totals = torch.zeros(3)
    first = torch.zeros(3)
    for _ in range(draws):
        a = split_tasks(batch, gen)
        counts = torch.tensor([a.count(t) for t in Task], dtype=torch.float)
        # Never more than one extra sample per task.
        assert counts.min() >= batch // 3 and counts.max() <= batch // 3 + 1
        totals += counts
        first[a.task[0]] += 1
    assert torch.allclose(totals / draws, torch.full((3,), batch / 3), atol=0.06)
    # No task is tied to a batch position either.
    assert torch.allclose(first / draws, torch.full((3,), 1 / 3), atol=0.06)


def test_modes_per_task():
    gen = torch.Generator().manual_seed(2)
    t2m_causal = []
    for _ in range(10):
        a = split_tasks(300, gen)
        assert not a.causal[a.task == Task.INPAINTING].any()  # inpainting: bidirectional
        assert a.causal[a.task == Task.CONTINUATION].all()  # continuation: unidirectional
        t2m_causal.append(a.causal[a.task == Task.TEXT_TO_MUSIC].float())
    rate = torch.cat(t2m_causal).mean().item()  # 1000 coin flips
    assert 0.44 < rate < 0.56


def test_split_is_reproducible():
    a = split_tasks(9, torch.Generator().manual_seed(5))
    b = split_tasks(9, torch.Generator().manual_seed(5))
    assert torch.equal(a.task, b.task) and torch.equal(a.causal, b.causal)


def test_text_to_music_mask_is_all_ones():
    mask = text_to_music_mask(2, 7)
    assert mask.shape == (2, 1, 7) and bool((mask == 1).all())


@pytest.mark.parametrize("frames", [10, 64])
def test_inpainting_masks(frames):
    gen = torch.Generator().manual_seed(3)
    lo, hi = 0.2, 0.8
    mask = inpainting_mask(600, frames, lo, hi, max_spans=3, generator=gen)
    assert mask.shape == (600, 1, frames)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    ratio = mask.mean(dim=(1, 2))
    tol = 0.5 / frames + 1e-6  # one rounding of ratio * frames
    assert bool((ratio >= lo - tol).all()) and bool((ratio <= hi + tol).all())
    # Never the whole sequence, never nothing.
    assert bool((mask.sum(dim=(1, 2)) >= 1).all())
    assert bool((mask.sum(dim=(1, 2)) <= frames - 1).all())
    counts = [len(_spans(row[0])) for row in mask]
    assert min(counts) == 1 and max(counts) == 3  # 1..max_spans, all of them used
    if frames == 64:
        # The ratio is drawn uniformly over [0.2, 0.8]: mean 0.5, and both halves are hit.
        assert abs(ratio.mean().item() - 0.5) < 0.03
        assert (ratio < 0.35).any() and (ratio > 0.65).any()


def test_inpainting_single_span():
    gen = torch.Generator().manual_seed(0)
    mask = inpainting_mask(50, 40, 0.3, 0.3, max_spans=1, generator=gen)
    for row in mask:
        spans = _spans(row[0])
        assert len(spans) == 1 and spans[0][1] - spans[0][0] == 12  # round(0.3 * 40)


def test_continuation_mask_is_a_suffix():
    gen = torch.Generator().manual_seed(4)
    frames = 50
    mask = continuation_mask(300, frames, 0.2, 0.8, generator=gen)
    ratio = mask.mean(dim=(1, 2))
    assert bool((ratio >= 0.2 - 0.01).all()) and bool((ratio <= 0.8 + 0.01).all())
    for row in mask[:, 0]:
        spans = _spans(row)
        assert len(spans) == 1 and spans[0][1] == frames and spans[0][0] > 0
    assert len(set(ratio.tolist())) > 10  # the ratio varies


def test_task_masks_follow_the_assignment():
    gen = torch.Generator().manual_seed(6)
    a = split_tasks(30, gen)
    mask = task_masks(a, 32, DiffusionConfig(), gen)
    for task, row in zip(a.task.tolist(), mask[:, 0], strict=True):
        spans = _spans(row)
        if task == Task.TEXT_TO_MUSIC:
            assert spans == [(0, 32)]
        elif task == Task.CONTINUATION:
            assert len(spans) == 1 and spans[0][1] == 32 and spans[0][0] > 0
        else:
            assert 1 <= len(spans) <= 3 and spans != [(0, 32)]


def test_mask_latent_zeroes_the_generated_frames():
    z = torch.randn(4, 3, 20) + 5.0  # no zeros of its own
    mask = inpainting_mask(4, 20, generator=torch.Generator().manual_seed(0))
    masked = mask_latent(z, mask)
    gen = mask.expand_as(z) == 1
    assert bool((masked[gen] == 0).all())
    assert torch.equal(masked[~gen], z[~gen])


def test_spans_to_mask():
    mask = spans_to_mask(10, [(0, 2), (5, 8), (7, 9)])
    assert mask.shape == (1, 1, 10)
    assert mask[0, 0].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError):
        spans_to_mask(10, [(3, 3)])
    with pytest.raises(ValueError):
        spans_to_mask(10, [(8, 11)])
    with pytest.raises(ValueError):
        spans_to_mask(10, [])


def test_bad_mask_arguments():
    with pytest.raises(ValueError):
        inpainting_mask(1, 1)
    with pytest.raises(ValueError):
        continuation_mask(1, 10, 0.8, 0.2)
    with pytest.raises(ValueError):
        inpainting_mask(1, 10, max_spans=0)
