"""Generation speed: full-size JEN-1 against MusicGen (small, medium) and Stable Audio Open.

Every model is built from its published configuration with random weights (nothing is
downloaded: speed does not depend on the weights' values), one at a time in this one process, and
run on the same seconds of audio. Per model and per stage (text encoding, denoising or token
generation, decoding) it reports seconds of compute per second of audio, the peak memory and the
parameter counts; the headline is ours ÷ each peer (compute seconds per audio second, below 1 =
ours is faster). It also counts the FLOPs of one of our generations and compares the achieved
FLOP/s with the machine's measured matmul throughput (the "physical limit").

- **jen1** (ours): ``presets.full_config()`` (743 M U-Net) + a FLAN-T5-large-sized encoder, its
  config's 25 DPM-Solver++ steps with classifier-free guidance batched into one batch-2 forward,
  whitener inverse, autoencoder decode. Past the 10 s window the pipeline rolls out windows; so
  does this.
- **musicgen-small / -medium**: ``transformers``' ``MusicgenForConditionalGeneration`` with T5-base,
  EnCodec 32 kHz (4 codebooks of 2048, 50 frames/s) and the 300 M / 1.5 B decoder: 50 tokens/s
  (+3 for the delay pattern) decoder steps at batch 2 (guidance 3) with a KV cache, top-k 250
  sampling, EnCodec decode.
- **stable-audio-open**: ``diffusers``' ``StableAudioPipeline`` with the 1.0 release's DiT,
  Oobleck VAE (44.1 kHz stereo, 21.5 latent frames/s) and T5-base (prompts padded to 128 tokens),
  100 steps with batched guidance. The pipeline always denoises and decodes its whole 47.55 s
  window and crops the request out of it, so that is what is timed; the JSON also gives the DiT's
  cost at the clip's own length.

On a GPU (``--device cuda``, bf16 by default) every generation runs in full. On a CPU that takes
hours, so by default a few steps are timed AT the full clip's sequence length and scaled by the
step count (``--steps-timed``); MusicGen's per-token cost grows with the KV cache, so tokens
(``--tokens-timed``) are timed at the start, middle and end of the sequence (the cache filled with
random keys and values) and the cost is integrated over all positions; decoders are timed on
``--decode-seconds`` of audio and scaled linearly (they are convolutional and recurrent, so linear
in length). Every extrapolated figure is flagged in the table and the JSON. A CPU run that would
be too long for one sitting can be split: ``--only`` some models, then ``--merge`` the earlier
JSON into the next run. Examples:

    python examples/benchmark_speed.py --seconds 10 --steps-timed 2 --out bench.json
    python examples/benchmark_speed.py --only stable-audio-open --steps-timed 1 \\
        --merge bench.json --out bench-all.json
    python examples/benchmark_speed.py --device cuda --dtype bf16 --seconds 10

This script is the command line and the run; each model's builder and timing is its own module in
``speedbench/`` (``jen1.py``, ``musicgen.py``, ``stable_audio.py``), apart from the measuring
(``measure.py``) and the report (``report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# examples/ is not a package: the benchmark's parts live beside this script, in speedbench/.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedbench.jen1 import bench_jen1, jen1_windows  # noqa: E402
from speedbench.machine import _loadavg, machine_info, matmul_peak  # noqa: E402
from speedbench.measure import (  # noqa: E402
    Clock,
    _proc_status_kb,
    _reset_rss_peak,
    log,
    release_memory,
)
from speedbench.musicgen import _integrate, bench_musicgen  # noqa: E402
from speedbench.report import (  # noqa: E402
    OURS,
    format_table,
    headline,
    merge_earlier,
    physical_limit,
)
from speedbench.settings import DTYPES, Settings  # noqa: E402
from speedbench.stable_audio import bench_stable_audio  # noqa: E402

# Also imported from here: examples/benchmark_training.py reads /proc as this benchmark does, and
# the tests call the token-cost integration and the rollout windows.
__all__ = ["_integrate", "_proc_status_kb", "_reset_rss_peak", "jen1_windows", "main"]

MODELS = ("jen1", "musicgen-small", "musicgen-medium", "stable-audio-open")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio to generate (seconds)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        help="weights and activations (default: cuda bf16, cpu fp32)",
    )
    p.add_argument(
        "--steps-timed",
        type=int,
        help="diffusion steps to time per model (at the full sequence length) and scale to the "
        "full count; default: all on cuda, 2 on cpu",
    )
    p.add_argument(
        "--tokens-timed",
        type=int,
        help="MusicGen tokens to time at each of 3 cache lengths; default: all on cuda, 8 on cpu",
    )
    p.add_argument(
        "--decode-seconds",
        type=float,
        help="audio to decode, scaled linearly to the clip; default: all on cuda, 2 on cpu",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="MODEL",
        help=f"models to run, repeatable or comma-separated ({', '.join(MODELS)}); default all",
    )
    p.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="take the models this run skips from an earlier report of the same machine and "
        "settings (to split a long CPU benchmark over several runs)",
    )
    p.add_argument("--tiny", action="store_true", help="tiny configs (a smoke test in seconds)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmark_speed.json"), help="JSON report")
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.steps_timed is not None and args.steps_timed < 1:
        p.error("--steps-timed must be >= 1")
    if args.tokens_timed is not None and args.tokens_timed < 1:
        p.error("--tokens-timed must be >= 1")
    if args.decode_seconds is not None and args.decode_seconds <= 0:
        p.error("--decode-seconds must be positive")
    selected = [x.strip() for arg in (args.only or MODELS) for x in arg.split(",") if x.strip()]
    unknown = sorted(set(selected) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.only = [m for m in MODELS if m in selected]
    return args


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Random-weight builds make transformers and diffusers chatty; the table is what matters."""
    import warnings

    from diffusers.utils import logging as df_logging
    from transformers.utils import logging as hf_logging

    levels = hf_logging.get_verbosity(), df_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    df_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Oobleck's old-style weight_norm
            yield
    finally:
        hf_logging.set_verbosity(levels[0])
        df_logging.set_verbosity(levels[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(args)
    if settings.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but CUDA is not available")
    clock = Clock(settings.device)
    report: dict[str, Any] = {
        "machine": machine_info(settings.device),
        "settings": settings.to_dict(),
        "models": {},
    }
    report["machine"]["load_average_start"] = _loadavg()
    # The peak in the precision the models run in (bf16 matmuls are about 2x fp32 on CPUs with
    # AVX512-BF16/AMX); fp16 has no fast CPU kernels, so a CPU fp16 run is held to fp32's peak.
    cpu_fp16 = settings.device.type == "cpu" and settings.dtype == torch.float16
    peak_dtype = torch.float32 if cpu_fp16 else settings.dtype
    log(f"matmul peak ({str(peak_dtype).removeprefix('torch.')}) ...")
    report["matmul_peak"] = matmul_peak(settings.device, peak_dtype, settings.tiny)
    runners = {
        "jen1": lambda: bench_jen1(settings, clock),
        "musicgen-small": lambda: bench_musicgen("small", settings, clock),
        "musicgen-medium": lambda: bench_musicgen("medium", settings, clock),
        "stable-audio-open": lambda: bench_stable_audio(settings, clock),
    }
    with _quiet_libraries():
        for name in args.only:
            log(f"{name} ...")
            t0, load = time.perf_counter(), _loadavg()
            failed = False
            try:
                result = runners[name]()
            except Exception as error:  # one model's failure must not lose the others' figures
                import traceback

                log(traceback.format_exc())
                result = {"skipped": f"failed: {type(error).__name__}: {error}"}
                failed = True
                report.setdefault("failed", []).append(name)
            # out here the runner's frames, a failed one's traceback included, are gone
            release_memory()
            result["load_average"] = {"before": load, "after": _loadavg()}
            result["wall_seconds_in_benchmark"] = time.perf_counter() - t0
            result["settings"] = settings.to_dict()
            # The ceiling measured in the same process, so a merged model keeps its own.
            result["matmul_peak"] = report["matmul_peak"]
            report["models"][name] = result
            log(f"{name}: {'failed' if failed else 'done'} in {time.perf_counter() - t0:.1f} s")
    report["load_average_end"] = _loadavg()
    if args.merge:
        merge_earlier(report, args.merge, args.only)
        report["models"] = {n: report["models"][n] for n in MODELS if n in report["models"]}
    report["headline"] = headline(report["models"])
    ours = report["models"].get(OURS)
    if ours and "stages" in ours:
        peak = ours.get("matmul_peak", report["matmul_peak"])
        report["physical_limit"] = physical_limit(ours, peak, settings.seconds)
    report["notes"] = [
        "All models are built from their configurations with random weights; speed does not "
        "depend on the weights' values.",
        "Stages marked extrapolated were timed on fewer steps / tokens / seconds than a full "
        "generation needs and scaled (see each stage's 'method').",
        "ours_over_peer < 1 means ours needs less compute time per second of audio.",
        "Peak memory on CPU is the process-wide RSS high-water mark (VmHWM), reset after each "
        "model is built; cpu_rss_peak_minus_before_build_bytes is the model's own share.",
        "load_average: the machine's 1/5/15-minute load; above the thread count, other work "
        "shared the cores and wall times are inflated (compare cpu_seconds).",
    ]
    text = format_table(report)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if report.get("failed") and len(report["failed"]) == len(args.only):
        raise SystemExit(f"every model failed: {', '.join(report['failed'])}")
    return report


if __name__ == "__main__":
    main()
