"""Exponential moving average of model weights (§4.1: "an exponential moving average to aggregate
the weights"), kept in float32 so that bf16/fp16 training does not round the average away."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class EMA:
    """A float32 shadow copy of a model's floating-point parameters and buffers.

    ``update()`` after each optimizer step does ``shadow ← d·shadow + (1 − d)·weight``. With
    ``warmup=True`` the decay used is ``min(decay, (1 + n) / (10 + n))`` after n updates, so a short
    run's average is not stuck near the random initialisation. Non-float buffers (counters, integer
    indices) are skipped: they are not averaged and ``copy_to`` leaves them alone. Pass the bare
    model (``accelerator.unwrap_model(model)``), so names carry no ``module.`` prefix.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            name: t.detach().to(torch.float32, copy=True) for name, t in _float_tensors(model)
        }
        # Non-persistent buffers are derived from the config (the U-Net's ᾱ table): never averaged.
        # Checkpoints written before this rule hold them; a resume drops them (load_state_dict).
        self._derived = {name for name, _ in model.named_buffers()} - set(model.state_dict())

    def current_decay(self) -> float:
        """The decay the next ``update()`` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards the model's current weights."""
        decay = self.current_decay()
        names, shadows, currents = [], [], []
        for name, t in _float_tensors(model):
            if name not in self.shadow:
                raise KeyError(f"EMA has no shadow for {name!r}: was it built from this model?")
            names.append(name)
            shadows.append(self.shadow[name])
            currents.append(t.detach().to(device=self.shadow[name].device, dtype=torch.float32))
        if len(names) != len(self.shadow):
            raise KeyError("the model has fewer float tensors than the EMA was built from")
        # lerp(shadow, w, 1 - d) = d·shadow + (1 - d)·w, fused over all tensors.
        torch._foreach_lerp_(shadows, currents, 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (cast to each tensor's own dtype)."""
        for name, t in _float_tensors(model):
            t.copy_(self.shadow[name].to(device=t.device, dtype=t.dtype))

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadow weights (e.g. to the CPU to save accelerator memory)."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "warmup", "num_updates", "shadow": {name: float32 tensor}}`` for a resume."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": dict(self.shadow),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the tensor names must match this EMA's exactly."""
        shadow = {k: v for k, v in state["shadow"].items() if k not in self._derived}
        missing = set(self.shadow) - set(shadow)
        unexpected = set(shadow) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(
                f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        for name, value in shadow.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA shape mismatch for {name!r}: {tuple(value.shape)}")
            device = self.shadow[name].device
            self.shadow[name] = value.detach().to(device=device, dtype=torch.float32, copy=True)
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", self.warmup))
        self.num_updates = int(state["num_updates"])


def _float_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Named floating-point parameters and persistent buffers (what ``state_dict`` saves), in a
    stable order."""
    buffers = []
    for name, buffer in model.named_buffers():
        owner, _, leaf = name.rpartition(".")
        if leaf not in model.get_submodule(owner)._non_persistent_buffers_set:
            buffers.append((name, buffer))
    tensors = list(model.named_parameters()) + buffers
    return [(name, t) for name, t in tensors if t.is_floating_point()]
