"""Plot diffusion_probe.py rows over snapshots: held-out ε-MSE and text gain vs. samples seen.

    python examples/ablation/plot_curve.py curve.png a.json b.json --batch 16:0 --batch 32:2945

``--batch SIZE:FROM_STEP`` (repeatable) gives the samples per optimizer step from a step on, for
runs whose batch changed (e.g. resumed on two processes).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def samples_seen(step: int, batches: list[tuple[int, int]]) -> int:
    """Samples seen after ``step`` optimizer steps, with ``batches`` = [(size, from_step), ...]."""
    total = 0
    spans = sorted(batches, key=lambda b: b[1]) + [(0, 10**12)]
    for (size, start), (_, end) in zip(spans, spans[1:], strict=False):
        total += size * max(0, min(step, end) - start)
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("rows", nargs="+", type=Path)
    p.add_argument("--batch", action="append", default=[], help="SIZE:FROM_STEP")
    args = p.parse_args()
    batches = [tuple(int(x) for x in b.split(":")) for b in args.batch] or [(16, 0)]
    points, linear = [], None
    for path in args.rows:
        for row in json.loads(path.read_text()):
            step = int(re.search(r"step(\d+)", row["weights"]).group(1))
            points.append((samples_seen(step, batches), row["matched"], 100 * row["text_gain"]))
            linear = row.get("linear", linear)  # the probe's linear-denoiser mean, if it has one
    points.sort()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [x / 1000 for x, _, _ in points]
    a.plot(xs, [m for _, m, _ in points], "o-")
    if linear is not None:
        a.axhline(linear, ls="--", color="gray", label="linear denoiser √(1−ᾱ)·x_t")
        a.axhline(0.8 * linear, ls=":", color="gray", label="0.8 × linear (issue 16 goal)")
        a.legend(fontsize=8)
    a.set(xlabel="samples seen (thousands of 4 s crops)", ylabel="held-out ε-MSE (matched)")
    b.plot(xs, [g for _, _, g in points], "o-", color="tab:red")
    b.set(xlabel="samples seen (thousands of 4 s crops)", ylabel="text gain (%)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.out)
    for x, m, g in points:
        print(f"| {x:,} | {m:.4f} | {g:.2f} % |")


if __name__ == "__main__":
    main()
