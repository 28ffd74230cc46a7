"""Where the time of one `jen1 generate` goes: a printed breakdown, beside the previous release.

Each repeat runs in a fresh Python process, as a user's command does, and times every stage:
interpreter start, imports, model and text-encoder load, text encoding, each denoising step,
decode (network and Griffin-Lim apart), mastering and writing. The same process then exits, so
the total is the command's wall-clock time from spawn to exit. With ``--previous DIR`` (a checkout
of an earlier release, e.g. ``git worktree add /tmp/prev v0.x``) that release's own `jen1
generate` is timed end to end in the same run, alternating with ours, so both see the same load.

    python examples/profile_generate.py --repeats 3 --previous /tmp/prev
    python examples/profile_generate.py --model models/jen1-demo --steps 15 --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "ambient synth pad"


def child(args: argparse.Namespace) -> None:
    """One generate, timed stage by stage; prints one JSON line of stage -> seconds."""
    marks = {"spawn": float(os.environ["PROFILE_SPAWN"]), "start": time.time()}
    import torch  # noqa: F401  (torch alone, before the package: how much of imports it is)

    marks["torch"] = time.time()
    import jen1cli.modules.fourier_autoencoder as fourier
    from jen1cli.audio import master, save_audio
    from jen1cli.commands.common import load_pipeline, resolve_device
    from jen1cli.pipeline import SamplingOptions

    marks["imports"] = time.time()
    pipe = load_pipeline(args.model, resolve_device("auto"), args.dtype)
    marks["load"] = time.time()

    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    # Wrapped where the pipeline looks them up at call time, so no pipeline code changes.
    model = pipe.model
    model.text_encoder.forward = timed("text encoding", model.text_encoder.forward)
    model.autoencoder.decode = timed("decode (all)", model.autoencoder.decode)
    fourier.griffin_lim = timed("decode: Griffin-Lim", fourier.griffin_lim)
    steps: list[float] = []
    last = [time.perf_counter()]

    def callback(stage: str, done: int, total: int) -> None:
        if stage == "denoise":
            now = time.perf_counter()
            steps.append(now - last[0])
            last[0] = now

    options = SamplingOptions(steps=args.steps, scheduler=args.scheduler, seed=0)
    t = time.perf_counter()
    last[0] = t
    audio = pipe.generate([PROMPT], args.seconds, options, callback)
    generate_s = time.perf_counter() - t
    t = time.perf_counter()
    clip = master(audio[0].cpu(), pipe.sample_rate, -14.0)
    spent["mastering"] = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_audio(Path(tmp) / "out.wav", clip, pipe.sample_rate)
    spent["writing"] = time.perf_counter() - t
    # The first step's interval also holds the text encoding (it runs before sampling starts).
    if steps:
        steps[0] -= spent.get("text encoding", 0.0)
    decode_all = spent.pop("decode (all)", 0.0)
    gl = spent.pop("decode: Griffin-Lim", 0.0)
    stages = {
        "interpreter start": marks["start"] - marks["spawn"],
        "import torch": marks["torch"] - marks["start"],
        "import jen1cli (rest)": marks["imports"] - marks["torch"],
        "load model + text encoder": marks["load"] - marks["imports"],
        "text encoding": spent.get("text encoding", 0.0),
        "denoising": sum(steps),
        "decode: network": decode_all - gl,
        "decode: Griffin-Lim": gl,
        "generate: other": generate_s - sum(steps) - decode_all - spent.get("text encoding", 0.0),
        "mastering": spent["mastering"],
        "writing": spent["writing"],
    }
    print(json.dumps({"stages": stages, "steps": steps, "marks": marks}), flush=True)
    sys.stderr.flush()
    os._exit(0)  # as `jen1 generate` ends (jen1cli/cli.py): no interpreter teardown


def run_ours(args: argparse.Namespace, env: dict) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--seconds",
        str(args.seconds),
        "--dtype",
        args.dtype,
    ]
    for flag in ("model", "steps", "scheduler"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag}", str(getattr(args, flag))]
    spawn = time.time()
    out = subprocess.run(
        cmd, env={**env, "PROFILE_SPAWN": repr(spawn)}, capture_output=True, text=True, check=True
    )
    total = time.time() - spawn
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["total"] = total
    result["stages"]["process exit"] = total - sum(result["stages"].values())
    return result


def run_command(checkout: Path, args: argparse.Namespace, env: dict) -> float:
    """Wall-clock seconds of a checkout's own `jen1 generate` (its code, its bundled model)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "jen1cli", "generate", PROMPT, "-d", str(args.seconds)]
        cmd += ["-o", str(Path(tmp) / "out.wav"), "--quiet", "--seed", "0"]
        t = time.time()
        subprocess.run(
            cmd,
            env={**env, "PYTHONPATH": str(checkout)},
            cwd=checkout,
            capture_output=True,
            check=True,
        )
        return time.time() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help="model folder [default: the bundled model]")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, help="denoising steps [default: the model's]")
    p.add_argument("--scheduler", help="sampler [default: the model's]")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--previous", type=Path, help="checkout of the previous release to time")
    args = p.parse_args()
    if args.child:
        child(args)
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    here = Path(__file__).resolve().parent.parent
    runs, commands, previous = [], [], []
    for _ in range(args.repeats):  # alternating, so every variant sees the same load
        runs.append(run_ours(args, env))
        if args.model is None and args.steps is None and args.scheduler is None:
            commands.append(run_command(here, args, env))
        if args.previous:
            previous.append(run_command(args.previous, args, env))

    names = list(runs[0]["stages"])
    print(
        f'`jen1 generate "{PROMPT}" -d {args.seconds:g}`, {args.repeats} fresh processes, '
        f"{os.cpu_count()} CPUs, torch threads default; median seconds per stage\n"
    )
    print("| stage | median s | share |")
    print("|---|---|---|")
    total = statistics.median(r["total"] for r in runs)
    for name in names:
        value = statistics.median(r["stages"][name] for r in runs)
        print(f"| {name} | {value:.3f} | {100 * value / total:.0f} % |")
    print(f"| **total (spawn to exit)** | **{total:.3f}** | 100 % |")
    steps = [s for r in runs for s in r["steps"][1:]]
    if steps:
        print(
            f"\n{len(runs[0]['steps'])} denoising steps; median step "
            f"{statistics.median(steps):.3f} s (first step {runs[0]['steps'][0]:.3f} s)"
        )
    print("\nall totals: " + ", ".join(f"{r['total']:.2f}" for r in runs))
    if commands:  # the command itself (CLI parsing, progress, mastering, atomic write, exit)
        print(
            f"this checkout's `jen1 generate`: median {statistics.median(commands):.2f} s "
            f"({', '.join(f'{s:.2f}' for s in commands)})"
        )
    if previous:
        prev = statistics.median(previous)
        ours = statistics.median(commands) if commands else total
        print(
            f"previous release ({args.previous}): median {prev:.2f} s "
            f"({', '.join(f'{s:.2f}' for s in previous)}); ours / previous = {ours / prev:.2f}"
        )


if __name__ == "__main__":
    main()
