"""How long audio is cut into model windows: the causal rollout and the regeneration windows.

Pure index arithmetic on latent frames (no model), shared by every task: generation and
continuation extend audio window by window (:func:`rollout_windows`); inpainting, remix and loops
regenerate marked frames window by window (:func:`regeneration_windows`).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

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
