"""Learning-rate schedule of §5: linear warm-up, then linear decay to 0 over the whole run."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_linear_decay_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The LR multiplier at ``step``: 0 → 1 over the warm-up, then 1 → 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / warmup_steps
    # Past the end stays at 0 rather than going negative (a run resumed with fewer total steps).
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def warmup_linear_decay(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """A ``LambdaLR`` giving the optimizer's lr × `warmup_linear_decay_factor`, one call per step.

    The lambda is a closure, so ``state_dict()`` holds only the step count and base lrs: a resumed
    run rebuilds the scheduler from its own arguments and then loads the saved state.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in 0..{total_steps}, got {warmup_steps}")

    def factor(step: int) -> float:
        return warmup_linear_decay_factor(step, warmup_steps, total_steps)

    return LambdaLR(optimizer, factor)
