"""U-Net precision: one guided denoising step of the full-size model in fp32 and in bf16/fp16.

Both run in this one process on the same inputs, alternating (fp32, low, fp32, low, ...) so a
drift in the machine's speed hits both; it prints the median seconds per step, the speed-up and
how far the low-precision ε̂ is from the fp32 one (relative L2). This is what `--dtype bf16`
changes in `jen1 generate` (only the U-Net runs in low precision). Random weights: speed does not
depend on their values. Example:

    python examples/benchmark_dtype.py --seconds 10 --repeats 3 --out dtype.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from jen1cli.diffusion.sampling import predict_noise
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.pipeline import Jen1Pipeline
from jen1cli.presets import full_config

LOW = {n: d for n, d in Jen1Pipeline.UNET_DTYPES.items() if n != "fp32"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio the step covers")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per precision")
    p.add_argument("--low", choices=sorted(LOW), default="bf16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("benchmark_dtype.json"))
    args = p.parse_args()

    config = full_config()
    frames = round(args.seconds * config.autoencoder.frame_rate)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    unet = OmniUNet1d(config.unet).eval().to(dev)
    k = config.unet.latent_channels
    x, masked = torch.randn(1, k, frames, device=dev), torch.zeros(1, k, frames, device=dev)
    mask = torch.ones(1, 1, frames, device=dev)
    context = torch.randn(1, 32, config.unet.context_dim, device=dev)
    context_mask = torch.ones(1, 32, dtype=torch.bool, device=dev)
    guidance = config.diffusion.guidance_scale

    # One copy per precision: casting one model back and forth would leave the "fp32" weights
    # rounded to bf16 after the first low-precision step.
    names = {"fp32": torch.float32, args.low: LOW[args.low]}
    unets = {"fp32": unet, args.low: copy.deepcopy(unet).to(LOW[args.low])}

    def step(name: str) -> tuple[float, torch.Tensor]:
        dtype = names[name]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            eps = predict_noise(
                unets[name], x.to(dtype), torch.tensor(500, device=dev), masked.to(dtype),
                mask.to(dtype), context.to(dtype), context_mask, causal=False,
                guidance_scale=guidance,
            )  # fmt: skip
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, eps.float()

    times: dict[str, list[float]] = {n: [] for n in names}
    eps: dict[str, torch.Tensor] = {}
    for name in names:  # warm-up: first calls pay for kernel selection
        eps[name] = step(name)[1]
    for _ in range(args.repeats):
        for name in names:
            times[name].append(step(name)[0])
    median = {n: statistics.median(t) for n, t in times.items()}
    rel = float((eps[args.low] - eps["fp32"]).norm() / eps["fp32"].norm())
    report = {
        "device": str(dev),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds_of_audio": args.seconds,
        "latent_frames": frames,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "seconds_per_guided_step": median,
        "all_times": times,
        "speedup": median["fp32"] / median[args.low],
        "relative_l2_of_eps": rel,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"full-size U-Net, one guided step over {args.seconds:g} s ({frames} frames) on {dev}: "
        f"fp32 {median['fp32']:.2f} s, {args.low} {median[args.low]:.2f} s "
        f"→ {report['speedup']:.2f}× faster; ε̂ differs by {rel:.2%} (relative L2). "
        f"Report: {args.out}"
    )


if __name__ == "__main__":
    main()
