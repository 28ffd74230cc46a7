"""Measuring: wall and CPU time, peak memory, FLOPs, and one stage's figures for the report."""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


class Clock:
    """Wall-clock timing that waits for the device, so asynchronous CUDA work is counted.

    It also adds up the process's CPU time (all threads) over the timed calls: on a CPU shared
    with other work, wall time grows with the contention while CPU time mostly does not, so
    ``cpu / wall`` (about the thread count when the machine is ours alone) shows how clean a
    measurement was.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cpu = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """(seconds, result) of one call."""
        self.sync()
        cpu = time.process_time()
        start = time.perf_counter()
        out = fn()
        self.sync()
        wall = time.perf_counter() - start
        self._cpu += time.process_time() - cpu
        return wall, out

    def median(self, fn: Callable[[], Any], repeats: int) -> float:
        """Median seconds over ``repeats`` calls (cheap stages, where noise matters)."""
        return statistics.median(self.time(fn)[0] for _ in range(repeats))

    def take_cpu(self) -> float:
        """CPU seconds of the calls timed since the last ``take_cpu`` (warm-ups: discard it)."""
        cpu, self._cpu = self._cpu, 0.0
        return cpu


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM), so each model gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak memory of one model's generation (weights resident + activations).

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process's RSS high-water mark (VmHWM), which
    is process-wide, so it is reset (``/proc/self/clear_refs``) once the model is built and the
    resident size before the model was built is reported beside it, to be subtracted.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_before_build_kb = _proc_status_kb("VmRSS")
        self.reset_ok = False

    def start(self) -> None:
        """Call once the model is built and cast: build-time transients are not counted."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.reset_ok = _reset_rss_peak()
        self.rss_after_build_kb = _proc_status_kb("VmRSS")

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        hwm = _proc_status_kb("VmHWM")
        if hwm is not None and self.rss_before_build_kb is not None:
            out["cpu_rss_peak_bytes"] = hwm * 1024
            out["cpu_rss_before_build_bytes"] = self.rss_before_build_kb * 1024
            out["cpu_rss_after_build_bytes"] = self.rss_after_build_kb * 1024
            out["cpu_rss_peak_minus_before_build_bytes"] = (hwm - self.rss_before_build_kb) * 1024
            out["cpu_rss_peak_reset"] = self.reset_ok
            out["cpu_note"] = (
                "process-wide VmHWM, reset after the model was built"
                if self.reset_ok
                else "process-wide VmHWM, could not be reset: includes earlier models' peaks"
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
        return out


def params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def param_counts(text_encoder: list, generator: list, autoencoder: list) -> dict[str, int]:
    """Parameters per part (each a list of modules; None counts 0) and their total."""
    counts = {
        "text_encoder": sum(params(m) for m in text_encoder),
        "generator": sum(params(m) for m in generator),
        "autoencoder": sum(params(m) for m in autoencoder),
    }
    return {**counts, "total": sum(counts.values())}


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_flop_formulas() -> dict[Any, Callable]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one: count it the same."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _sdpa_flops}


def count_flops(fn: Callable[[], Any], lstm_owner: nn.Module | None = None) -> tuple[Any, int]:
    """(result, FLOPs) of one call; FlopCounterMode skips LSTMs, so theirs are added by hook."""
    extra = [0]
    hooks = []
    if lstm_owner is not None:
        for m in lstm_owner.modules():
            if isinstance(m, nn.LSTM):
                hooks.append(m.register_forward_hook(_lstm_flop_hook(extra)))
    try:
        # Outside inference mode: FlopCounterMode cannot run weight-norm parametrizations there.
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as counter,
        ):
            out = fn()
    finally:
        for h in hooks:
            h.remove()
    return out, int(counter.get_total_flops()) + extra[0]


def _lstm_flop_hook(total: list[int]) -> Callable:
    def hook(module: nn.LSTM, inputs: tuple, _output: Any) -> None:
        x = inputs[0]  # [T, B, C] (batch_first=False, as our autoencoder calls it)
        steps, batch = x.shape[0], x.shape[1]
        h = module.hidden_size
        flops = 0
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else h
            flops += 2 * 4 * h * (width + h)  # four gates, a multiply-add per weight
        total[0] += flops * steps * batch

    return hook


def stage(
    total_seconds: float,
    audio_seconds: float,
    *,
    measured_seconds: float,
    measured_units: float,
    total_units: float,
    unit: str,
    method: str,
    measured_cpu_seconds: float,
) -> dict[str, Any]:
    """One stage's figures for the whole clip; ``extrapolated`` when fewer units ran than needed.

    CPU seconds are scaled to the clip like the wall time.
    """
    cpu = measured_cpu_seconds * total_seconds / measured_seconds if measured_seconds else 0.0
    return {
        "seconds": total_seconds,
        "per_audio_second": total_seconds / audio_seconds,
        "extrapolated": measured_units < total_units,
        "cpu_seconds": cpu,
        "cpu_per_audio_second": cpu / audio_seconds,
        "cpu_over_wall": measured_cpu_seconds / measured_seconds if measured_seconds else None,
        "measured_seconds": measured_seconds,
        "measured_cpu_seconds": measured_cpu_seconds,
        "measured_units": measured_units,
        "total_units": total_units,
        "unit": unit,
        "method": method,
    }


def text_stage(
    seconds: float,
    cpu_seconds: float,
    audio_seconds: float,
    repeats: int,
    tokens: int,
    note: str = "",
) -> dict[str, Any]:
    """The text-encoding stage: one prompt, timed whole (never extrapolated)."""
    return stage(
        seconds,
        audio_seconds,
        measured_seconds=seconds,
        measured_units=1,
        total_units=1,
        unit="prompt",
        measured_cpu_seconds=cpu_seconds,
        method=f"median of {repeats} encodings of {tokens} tokens{note}",
    )


def release_memory() -> None:
    """Return a finished model's memory (its last references died with its runner), so the next
    model starts from a clean process."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
