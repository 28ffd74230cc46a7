"""`--dtype auto` (jen1cli/native_bf16.py): bf16 only for big U-Nets on native-bf16 hardware."""

from pathlib import Path

import pytest

from jen1cli import native_bf16
from jen1cli.native_bf16 import AUTO_BF16_MIN_PARAMS, auto_unet_dtype, cpu_has_native_bf16


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"  # a new tmp_path per case: the cached answer is per path
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    return path


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu sse2 avx2 avx512f avx512_bf16", True),  # AMD Zen 4, Intel Cooper Lake
        ("fpu avx512f amx_tile amx_bf16 amx_int8", True),  # Intel Sapphire Rapids and later
        ("fpu sse2 avx2 avx512f avx512_vnni", False),  # AVX-512 without bf16 dot products
        ("fpu sse2", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, flags)) is native


def test_unreadable_cpu_flags_mean_fp32(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert cpu_has_native_bf16(tmp_path / "empty") is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_for_big_unets_on_native_hardware(monkeypatch, native):
    monkeypatch.setattr(native_bf16, "cpu_has_native_bf16", lambda: native)
    assert auto_unet_dtype(AUTO_BF16_MIN_PARAMS, "cpu") == ("bf16" if native else "fp32")
    assert auto_unet_dtype(AUTO_BF16_MIN_PARAMS - 1, "cpu") == "fp32"  # the bundled size
    assert auto_unet_dtype(AUTO_BF16_MIN_PARAMS, "mps") == "fp32"
