"""The machine: what it is (CPU, GPU, versions, load) and its measured matmul throughput."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from .measure import Clock


def matmul_peak(device: torch.device, dtype: torch.dtype, tiny: bool) -> dict[str, Any]:
    """Measured throughput of one large square matmul: the machine's practical FLOP/s ceiling."""
    n = 1024 if tiny else (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    clock = Clock(device)
    clock.time(lambda: a @ b)  # warm-up
    seconds, reps = 0.0, 0
    while reps < 3 or seconds < (0.2 if tiny else 2.0):
        s, _ = clock.time(lambda: a @ b)
        seconds += s
        reps += 1
    flops = 2 * n**3 * reps
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": reps,
        "seconds": seconds,
        "flops_per_second": flops / seconds,
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    import diffusers
    import transformers

    import jen1cli

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "memory_total_bytes": _meminfo_total(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
            "jen1cli": jen1cli.__version__,
        },
    }
    return info


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return int(next(x for x in f if x.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        return None


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None
