"""Is a loop's wrap like any other moment of it? Its flux rank among the loop's inner points.

``eval_edits.py`` asks of each ``--loop`` file whether the spectral flux across its wrap is at most
the 95th percentile of the flux inside it. A loop with no seam at all still fails that now and
then: its wrap is one more moment of the music, and about one moment in eight has an attack near
it. So this script measures the loop as sampled, before the file's start is moved to its
steadiest point, over many seeds, and reports

- ``rank``: the share of inner points whose local flux (the same measure, centred there) is below
  the wrap's. A seamless loop's wrap ranks like a random point: 0.5 on average. A seam ranks near 1.
- ``below p95``: how often the wrap's flux is at most the inner 95th percentile, beside ``chance``,
  how often a random inner point's is (what a seamless loop is expected to score).

    python examples/eval_loop_wrap.py --seeds 8 --seconds 8 --out loop_wrap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_edits import HOP, LOOP_PROMPTS, N_FFT, flux_around, loop_flux, wrap_flux  # noqa: E402


def local_flux_profile(x: np.ndarray) -> np.ndarray:
    """For a loop [C, n]: the wrap measure of eval_edits.py centred at each inner point (every
    hop, a frame clear of the ends)."""
    n = x.shape[-1]
    flux, starts = loop_flux(x)
    return np.array([flux_around(flux, starts, p) for p in range(N_FFT, n - N_FFT, HOP)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder [default: the bundled one]")
    parser.add_argument("--prompts", nargs="+", default=LOOP_PROMPTS)
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 per prompt")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from jen1cli.commands.common import load_pipeline
    from jen1cli.loop import master_loop
    from jen1cli.pipeline import SamplingOptions

    pipe = load_pipeline(args.model, "cpu", "fp32")
    length = round(args.seconds * pipe.sample_rate)
    frames = pipe.loop_frames(length)
    rows = []
    for seed in range(args.seeds):
        for prompt in args.prompts:
            options = SamplingOptions(seed=seed)
            latents = pipe._loop_latents([prompt], frames, options, lambda *a: None)
            audio = pipe._decode_loop(latents, length, lambda *a: None)[0]  # start not moved
            x = master_loop(audio, pipe.sample_rate, -14.0).numpy()
            measures = wrap_flux(x)
            wrap, p95 = measures["flux_wrap"], measures["flux_inside_p95"]
            profile = local_flux_profile(x)
            row = {"prompt": prompt, "seed": seed, "flux_wrap": wrap, "flux_inside_p95": p95,
                   "rank": float((profile < wrap).mean()), "below_p95": wrap <= p95,
                   "chance": float((profile <= p95).mean())}  # fmt: skip
            rows.append(row)
            print(f"seed {seed} {prompt!r}: wrap {wrap:.0f} (p95 {p95:.0f}), rank "
                  f"{row['rank']:.2f}", file=sys.stderr, flush=True)  # fmt: skip
    print("| prompt | loops | wrap below p95 | expected if seamless | mean rank |")
    print("|---|---|---|---|---|")
    for prompt in [*args.prompts, None]:
        mine = [r for r in rows if prompt is None or r["prompt"] == prompt]
        print(f"| {prompt or '**all**'} | {len(mine)} | {sum(r['below_p95'] for r in mine)} | "
              f"{sum(r['chance'] for r in mine):.1f} | "
              f"{statistics.mean(r['rank'] for r in mine):.2f} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
