"""Which precision `--dtype auto` picks for the U-Net: bf16 where it pays, fp32 elsewhere.

bf16 pays where the hardware computes it natively and the U-Net is big enough for its matmuls to
dominate. Measured with `examples/benchmark_speed.py` on 2 cores of an Intel Xeon with AMX
(2026-12-03): the full 743 M U-Net denoised 3.1x faster in bf16 than in fp32 (4.63 against 14.44 s
per audio second at 50 steps); the bundled 8.5 M one gained 5 % (`jen1 generate ... -d 10`, 4.4
against 4.75 s) while Griffin-Lim turned bf16's rounding into a 14 % different waveform. So small
U-Nets stay in fp32, which also keeps their output the same on every machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

AUTO_BF16_MIN_PARAMS = 100_000_000
_NATIVE_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}  # x86 instructions that compute bf16 dot products


@cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 dot-product instructions (x86 AMX or AVX-512 BF16), from the
    kernel's flags; False where they cannot be read (other systems: fp32 is the safe choice)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(_NATIVE_CPU_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def device_has_native_bf16(device: str) -> bool:
    """``cuda`` with bf16 support, or a CPU with bf16 instructions; never ``mps``."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_native_bf16()


def auto_unet_dtype(unet_parameters: int, device: str) -> str:
    """``bf16`` for a U-Net of at least ``AUTO_BF16_MIN_PARAMS`` on native-bf16 hardware, else
    ``fp32``."""
    if unet_parameters >= AUTO_BF16_MIN_PARAMS and device_has_native_bf16(device):
        return "bf16"
    return "fp32"
