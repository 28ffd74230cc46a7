"""How many denoising steps does a sampler need? Each step count against a many-step reference.

For every prompt and seed the same starting noise is denoised with each sampler and step count,
and with ``--reference-steps`` DPM-Solver++ steps as the reference. Reported per setting, as means
over prompts and seeds: the latent error relative to the reference (‖x − x_ref‖² / ‖x_ref‖²), the
log-mel distance of the decoded audio to the reference's (mean |dB| over the mel bins within 60 dB
of the peak), median spectral flatness (eval_musicality.py's), and the denoising seconds per
clip. Below a step count where these stop changing, more steps buy nothing a listener hears.

    python examples/eval_steps.py --model models/jen1-demo --steps 10,15,20,25,50 --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_figures import log_mel  # noqa: E402
from eval_musicality import median_flatness  # noqa: E402

PROMPTS = (
    "ambient synth pad",
    "a mellow piano ballad",
    "fast rock with drums and electric guitar",
    "lofi hip hop beat",
    "techno bassline with hi-hats",
    "jazz trio with upright bass",
)


def mel_distance(audio: np.ndarray, reference: np.ndarray, sr: int) -> float:
    """Mean |dB| between two clips' log-mel spectrograms, over the reference's loud bins."""
    a, b = log_mel(audio, sr), log_mel(reference, sr)
    loud = b > -60.0
    return float(np.abs(a - b)[loud].mean())


def main(argv: list[str] | None = None) -> None:
    from jen1cli.pipeline import Jen1Pipeline, SamplingOptions

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/jen1-demo")
    p.add_argument("--steps", default="10,15,20,25,50", help="comma-separated step counts")
    p.add_argument("--schedulers", default="dpmsolver++", help="comma-separated samplers")
    p.add_argument("--reference-steps", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--prompt", action="append", help="repeatable [default: six prompts]")
    args = p.parse_args(argv)

    pipe = Jen1Pipeline.from_pretrained(args.model)
    sr = pipe.sample_rate
    length = round(args.seconds * sr)
    frames = pipe.frames_for(length)
    prompts = args.prompt or list(PROMPTS)
    settings = [(s, int(n)) for s in args.schedulers.split(",") for n in args.steps.split(",")]
    rows: dict[tuple[str, int], dict[str, list[float]]] = {k: {} for k in settings}
    reference_flatness = []

    def run(prompt: str, seed: int, scheduler: str, steps: int):
        options = SamplingOptions(steps=steps, scheduler=scheduler, seed=seed)
        t = time.perf_counter()
        latents = pipe._rollout([prompt], None, frames, options, lambda *a: None)
        seconds = time.perf_counter() - t
        audio = pipe.decode(latents, length)[0].cpu().numpy()
        return latents, audio, seconds

    for prompt in prompts:
        for seed in range(args.seeds):
            ref_latents, ref_audio, _ = run(prompt, seed, "dpmsolver++", args.reference_steps)
            reference_flatness.append(median_flatness(ref_audio, sr))
            for key in settings:
                latents, audio, seconds = run(prompt, seed, *key)
                err = float((latents - ref_latents).square().sum() / ref_latents.square().sum())
                got = rows[key]
                got.setdefault("latent", []).append(err)
                got.setdefault("mel", []).append(mel_distance(audio, ref_audio, sr))
                got.setdefault("flatness", []).append(median_flatness(audio, sr))
                got.setdefault("seconds", []).append(seconds)
            print(f"done: {prompt!r} seed {seed}", file=sys.stderr, flush=True)

    print(
        f"{len(prompts)} prompts × {args.seeds} seeds, {args.seconds:g} s, model {args.model}; "
        f"reference: DPM-Solver++ at {args.reference_steps} steps "
        f"(median flatness {statistics.median(reference_flatness):.2e})\n"
    )
    print("| sampler | steps | latent error vs ref | log-mel distance (dB) | median flatness "
          "| denoising s/clip |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for (scheduler, steps), got in rows.items():
        print(
            f"| {scheduler} | {steps} | {statistics.mean(got['latent']):.4f} | "
            f"{statistics.mean(got['mel']):.2f} | {statistics.median(got['flatness']):.2e} | "
            f"{statistics.mean(got['seconds']):.2f} |"
        )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
