"""Diffusion training throughput: steps/s, samples/s and audio-seconds/s of one model config here.

Each configuration (crop × batch × threads × dtype) gets a fresh U-Net (random init, seeded: speed
does not depend on the weights' values) and AdamW (β 0.9/0.95, weight decay 0.1, as
``jen1 train``), and times the diffusion stage's step: ``diffusion_loss`` forward (through the
trainer's ``DiffusionObjective``: a task and a mode per sample, so usually one bidirectional and
one causal U-Net pass) + backward + ``clip_grad_norm_(1.0)`` + the optimizer step. The inputs are
random whitened latents [B, k, frames] and random text states [B, 24, context_dim] with a padding
mask: the trainer caches every caption's states (the frozen encoder runs once per caption, not per
step) and a latent cache skips the codec, so neither is in the step. Not timed either: the data
loader, the EMA update (one fused lerp over the weights) and the LR scheduler.

``bf16`` runs the forward and the loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``, what
``jen1 train --mixed-precision bf16`` does on a CPU (weights and optimizer stay fp32). Every
configuration runs in this one process, one after the other; the first is the baseline, and the
ratio (``× base``) compares audio-seconds per second, the throughput that is comparable across
crops and batch sizes. Figures are from the median step time (a spike from other work on the
machine moves the mean, not the median); ``cpu/wall`` near the thread count means the cores were
ours. ``--profile`` runs torch.profiler on one more step per configuration and prints the top ops
by self CPU time and the shares of convolutions, attention, group norm and the optimizer. Examples:

    python examples/benchmark_training.py --config demo --crop 4,10 --batch 16 --dtype fp32,bf16
    python examples/benchmark_training.py --config tiny --crop 1 --steps 2 --profile
    python examples/benchmark_training.py --model models/jen1-demo --threads 1,2 --out train.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from jen1cli.config import Jen1Config
from jen1cli.model import CONFIG_NAME
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.presets import load_preset
from jen1cli.training.trainer import DiffusionObjective

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The same /proc readers as the speed benchmark: peak RSS per configuration.
from benchmark_speed import _proc_status_kb, _reset_rss_peak  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16}  # None: no autocast
TEXT_TOKENS = 24  # a caption of a few dozen words, as the tokenizer pads a batch to its longest
TOP_OPS = 15
# Op categories of the profile: a substring of the op's name, lower case without underscores, so
# "aten::convolution_backward" and the engine's "ConvolutionBackward0" both count as conv. Self
# CPU time, so the categories do not overlap; an op matches the first category that fits.
OP_CATEGORIES = {
    "conv": ("conv",),
    "attention (sdpa)": ("scaleddotproduct",),
    "group norm": ("groupnorm",),
    "matmul (linear)": ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul"),
    "casts/copies": ("aten::tocopy", "aten::copy"),
}
PHASES = ("forward", "backward", "clip", "optimizer")  # the parts of one step, timed each step
PHASE_LABEL = "step: {}"  # their record_function labels in the profile


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


class Case(NamedTuple):
    """One configuration to time."""

    crop: float  # seconds of audio per sample
    batch: int
    threads: int
    dtype: str  # a key of DTYPES


# --- inputs ----------------------------------------------------------------------------------


def load_config(config: str = "demo", model: str | None = None) -> Jen1Config:
    """``--config`` (tiny, demo, full or a config.json) or ``--model FOLDER`` (its config.json)."""
    if model is not None:
        path = Path(model)
        path = path / CONFIG_NAME if path.is_dir() else path
        if not path.is_file():
            raise SystemExit(f"--model {model}: no {CONFIG_NAME} there")
        return Jen1Config.load(path)
    try:
        return load_preset(config)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def frames_for(config: Jen1Config, crop: float) -> int:
    """Latent frames of a crop, as the trainer's latent cache cuts them."""
    return max(1, round(crop * config.autoencoder.frame_rate))


def make_inputs(
    config: Jen1Config, batch: int, frames: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whitened latents [B, k, T] (unit variance), text states [B, L, D] and their mask [B, L].

    Captions differ in length: each row keeps 8..L tokens (the first all L, so the batch is padded
    to L, as the tokenizer pads to the longest), zeros at the padding like ``TextEncoder``.
    """
    k, dim = config.unet.latent_channels, config.unet.context_dim
    latents = torch.randn(batch, k, frames, generator=generator)
    lengths = torch.randint(min(8, TEXT_TOKENS), TEXT_TOKENS + 1, (batch,), generator=generator)
    lengths[0] = TEXT_TOKENS
    mask = torch.arange(TEXT_TOKENS)[None, :] < lengths[:, None]  # [B, L] bool
    context = torch.randn(batch, TEXT_TOKENS, dim, generator=generator) * mask[..., None]
    return latents, context, mask


# --- one configuration -----------------------------------------------------------------------


class Trainer:
    """The diffusion stage's step on a fresh model, split into its timed phases."""

    def __init__(self, config: Jen1Config, case: Case, seed: int) -> None:
        torch.manual_seed(seed)
        unet = OmniUNet1d(config.unet, config.diffusion).train()
        self.objective = DiffusionObjective(unet, config.diffusion)
        self.optimizer = torch.optim.AdamW(
            self.objective.parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.1
        )
        inputs = torch.Generator().manual_seed(seed)
        self.latents, self.context, self.mask = make_inputs(
            config, case.batch, frames_for(config, case.crop), inputs
        )
        # The same task/mode/timestep draws in every configuration of a batch size.
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.autocast = DTYPES[case.dtype]
        self.params = sum(p.numel() for p in self.objective.parameters())

    def step(self) -> dict[str, float]:
        """One training step; seconds per phase (CPU work is synchronous, so a clock suffices)."""
        times = {}
        start = time.perf_counter()
        with (
            torch.profiler.record_function(PHASE_LABEL.format("forward")),
            torch.autocast("cpu", dtype=self.autocast, enabled=self.autocast is not None),
        ):
            loss, _ = self.objective(self.latents, self.context, self.mask, self.generator)
        times["forward"], start = _lap(start)
        with torch.profiler.record_function(PHASE_LABEL.format("backward")):
            loss.backward()
        times["backward"], start = _lap(start)
        with torch.profiler.record_function(PHASE_LABEL.format("clip")):
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), 1.0)
        times["clip"], start = _lap(start)
        with torch.profiler.record_function(PHASE_LABEL.format("optimizer")):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        times["optimizer"], _ = _lap(start)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {float(loss)}")
        return times


def _lap(start: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - start, now


def run_case(
    config: Jen1Config, case: Case, steps: int, warmup: int, seed: int, profile: bool
) -> dict[str, Any]:
    """Time ``steps`` steps after ``warmup`` of one configuration; its row of the report."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        trainer = Trainer(config, case, seed)
        reset = _reset_rss_peak()
        for _ in range(warmup):  # first steps pay for allocation and kernel selection
            trainer.step()
        phases: list[dict[str, float]] = []
        cpu = time.process_time()
        wall = time.perf_counter()
        for _ in range(steps):
            phases.append(trainer.step())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        totals = [sum(p.values()) for p in phases]
        median = statistics.median(totals)
        row: dict[str, Any] = {
            **case._asdict(),
            "frames": frames_for(config, case.crop),
            "steps_timed": steps,
            "warmup_steps": warmup,
            "seconds_per_step_median": median,
            "seconds_per_step_mean": statistics.fmean(totals),
            "seconds_per_step_min": min(totals),
            "steps_per_second": 1.0 / median,
            "samples_per_second": case.batch / median,
            "audio_seconds_per_second": case.batch * case.crop / median,
            "phase_seconds_median": {k: statistics.median(p[k] for p in phases) for k in PHASES},
            "cpu_over_wall": cpu / wall if wall > 0 else None,
            "peak_rss_bytes": _peak_rss_bytes() if reset else None,
            "unet_parameters": trainer.params,
        }
        row["phase_share"] = {
            k: sum(p[k] for p in phases) / sum(totals) for k in PHASES if sum(totals) > 0
        }
        if profile:
            row["profile"] = profile_step(trainer)
        return row
    finally:
        torch.set_num_threads(previous_threads)


def profile_step(trainer: Trainer) -> dict[str, Any]:
    """torch.profiler over one step: the top ops by self CPU time and the shares per category.

    Self times do not overlap, so the category shares add up to at most 100 %; the phases
    (forward, backward, clip, optimizer) are inclusive, each a share of the whole step.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        trainer.step()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)  # µs
    if total <= 0:
        return {"wall_seconds": wall, "top_ops": [], "categories": {}, "phases": {}}
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPS]
    categories = dict.fromkeys(OP_CATEGORIES, 0.0)
    for e in events:
        name = op_category(e.key)
        if name is not None:
            categories[name] += e.self_cpu_time_total / total
    categories["other"] = max(0.0, 1.0 - sum(categories.values()))
    labels = {PHASE_LABEL.format(k): k for k in PHASES}
    # inclusive: everything each phase ran, its ops and the Python between them
    phases = {labels[e.key]: e.cpu_time_total / total for e in events if e.key in labels}
    return {
        "wall_seconds": wall,
        "profiled_cpu_seconds": total / 1e6,
        "top_ops": [
            {
                "op": e.key,
                "self_cpu_seconds": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in top
        ],
        "categories": categories,
        "phases": {k: phases[k] for k in PHASES if k in phases},
    }


def op_category(name: str) -> str | None:
    """The OP_CATEGORIES entry a profiled op's name falls in, or None (other)."""
    key = name.lower().replace("_", "")
    for category, patterns in OP_CATEGORIES.items():
        if any(p in key for p in patterns):
            return category
    return None


def _peak_rss_bytes() -> int | None:
    kb = _proc_status_kb("VmHWM")
    return None if kb is None else kb * 1024


# --- the sweep -------------------------------------------------------------------------------


def cases(
    crops: list[float], batches: list[int], threads: list[int], dtypes: list[str]
) -> list[Case]:
    """Every combination, the first (first crop, batch, threads, dtype) the baseline."""
    return [Case(*c) for c in itertools.product(crops, batches, threads, dtypes)]


def benchmark(
    config: Jen1Config,
    configurations: list[Case],
    steps: int = 5,
    warmup: int = 2,
    seed: int = 0,
    profile: bool = False,
) -> dict[str, Any]:
    """Time every configuration in order; the report (rows, ratios against the first, machine)."""
    report: dict[str, Any] = {
        "config": config.name,
        "unet": {
            "latent_channels": config.unet.latent_channels,
            "context_dim": config.unet.context_dim,
            "frame_rate": config.autoencoder.frame_rate,
        },
        "machine": machine_info(),
        "settings": {"steps": steps, "warmup": warmup, "seed": seed, "text_tokens": TEXT_TOKENS},
        "load_average_start": _loadavg(),
        "rows": [],
    }
    for case in configurations:
        log(f"crop {case.crop:g} s, batch {case.batch}, {case.threads} thread(s), {case.dtype} ...")
        t0, load = time.perf_counter(), _loadavg()
        row = run_case(config, case, steps, warmup, seed, profile)
        row["load_average_before"] = load
        row["wall_seconds_in_benchmark"] = time.perf_counter() - t0
        report["rows"].append(row)
    base = report["rows"][0]["audio_seconds_per_second"] if report["rows"] else None
    for row in report["rows"]:
        row["ratio_vs_baseline"] = row["audio_seconds_per_second"] / base
    report["unet"]["parameters"] = report["rows"][0]["unet_parameters"] if report["rows"] else 0
    report["load_average_end"] = _loadavg()
    return report


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- printing --------------------------------------------------------------------------------

HEADER = (
    f"{'crop s':>6} {'batch':>5} {'thr':>3} {'dtype':>5} {'ms/step':>9} {'steps/s':>8} "
    f"{'samples/s':>9} {'audio s/s':>9} {'× base':>7} {'fwd%':>5} {'bwd%':>5} {'clip%':>5} "
    f"{'opt%':>5} {'cpu/wall':>8} {'peak RSS':>9}"
)


def format_row(row: dict[str, Any]) -> str:
    share = row["phase_share"]
    rss = row.get("peak_rss_bytes")
    rss_text = "-" if rss is None else f"{rss / 2**20:.0f} MB"
    cpu_wall = row.get("cpu_over_wall")
    return (
        f"{row['crop']:>6g} {row['batch']:>5} {row['threads']:>3} {row['dtype']:>5} "
        f"{1e3 * row['seconds_per_step_median']:>9.1f} {row['steps_per_second']:>8.3f} "
        f"{row['samples_per_second']:>9.2f} {row['audio_seconds_per_second']:>9.2f} "
        f"{row['ratio_vs_baseline']:>6.2f}× "
        + " ".join(f"{100 * share.get(k, 0.0):>5.1f}" for k in PHASES)
        + f" {'-' if cpu_wall is None else f'{cpu_wall:.2f}':>8} {rss_text:>9}"
    )


def format_profile(row: dict[str, Any]) -> str:
    prof = row["profile"]
    title = (
        f"profile of one step: crop {row['crop']:g} s, batch {row['batch']}, "
        f"{row['threads']} thread(s), {row['dtype']} ({1e3 * prof['wall_seconds']:.0f} ms under "
        "the profiler)"
    )
    lines = [title, f"  {'self CPU':>10} {'share':>6} {'calls':>6}  op"]
    for op in prof["top_ops"]:
        lines.append(
            f"  {1e3 * op['self_cpu_seconds']:>8.1f}ms {100 * op['share']:>5.1f}% "
            f"{op['calls']:>6}  {op['op']}"
        )
    cats = ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["categories"].items())
    phases = ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["phases"].items())
    lines.append(f"  by op (self CPU time): {cats}")
    lines.append(f"  by phase (inclusive): {phases}")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    m, u, s = report["machine"], report["unet"], report["settings"]
    load = report.get("load_average_start")
    lines = [
        f"diffusion training step of {report['config']}: U-Net {u['parameters'] / 1e6:.2f} M "
        f"parameters, k = {u['latent_channels']}, {u['frame_rate']:g} frames/s, text states "
        f"[B, {s['text_tokens']}, {u['context_dim']}]",
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, bf16 instructions: "
        f"{', '.join(m['bf16_instructions']) or 'none'}"
        + ("" if load is None else f"; load average {load[0]:g}/{load[1]:g}/{load[2]:g}"),
        "step = diffusion_loss forward + backward + clip_grad_norm_(1.0) + AdamW step; random "
        "latents and text states (the trainer caches caption states: no text encoder in the step)",
        f"median of {s['steps']} steps after {s['warmup']} warm-up; × base = audio s/s over the "
        "first row's; phase % = share of the step",
        "",
        HEADER,
        *(format_row(row) for row in report["rows"]),
    ]
    for row in report["rows"]:
        if "profile" in row:
            lines += ["", format_profile(row)]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", default="demo", help="tiny, demo, full or a config.json")
    source.add_argument("--model", help="a model folder: benchmark its config.json")
    p.add_argument("--crop", type=_floats, default=[4.0, 10.0], help="seconds, comma-separated")
    p.add_argument("--batch", type=_ints, default=[16], help="batch sizes, comma-separated")
    p.add_argument(
        "--threads", type=_ints, help="torch CPU threads, comma-separated (default: torch's)"
    )
    p.add_argument("--dtype", type=_names, default=["fp32"], help="fp32,bf16 (bf16 = autocast)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--profile", action="store_true", help="profile one more step per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the report as JSON")
    args = p.parse_args(argv)
    args.threads = args.threads or [torch.get_num_threads()]
    unknown = sorted(set(args.dtype) - set(DTYPES))
    if unknown:
        p.error(f"unknown --dtype {', '.join(unknown)}: choose from {', '.join(DTYPES)}")
    if not (args.crop and args.batch and args.dtype):
        p.error("--crop, --batch and --dtype need at least one value each")
    if min(args.crop) <= 0 or min(args.batch) < 1 or min(args.threads) < 1:
        p.error("--crop must be positive, --batch and --threads at least 1")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = load_config(args.config, args.model)
    configurations = cases(args.crop, args.batch, args.threads, args.dtype)
    report = benchmark(config, configurations, args.steps, args.warmup, args.seed, args.profile)
    print(format_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
