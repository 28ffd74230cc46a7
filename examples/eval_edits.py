"""Edits at the song's level, measured through the CLI as a user runs it (issue 18, part 4).

1. Inpainting two spans of real recordings (``jen1 inpaint excerpt.wav --mask A --mask B``): the
   file's integrated loudness before and after (goal: within 1 LU), and each regenerated span's
   loudness against the kept audio within 2 s on each side of it (goal: within 2 LU).
2. Loops (``jen1 generate PROMPT -d 8 --loop``): the spectral flux between STFT frames that
   straddle the end-to-start wrap against the 95th percentile of the flux inside the loop
   (goal: at most that).

    python examples/eval_edits.py --songs '/usr/share/planetblupi/music/*.ogg' --out edits.json

Prints a Markdown table per part; ``--out`` keeps every figure.
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from jen1cli.audio import integrated_loudness, load_audio

SR = 48_000
LOOP_PROMPTS = [  # the README's loop example first, then the and four more
    "funk drum groove",
    "lofi hip hop beat",
    "ambient synth pad",
    "a mellow piano ballad",
    "fast rock with drums and electric guitar",
    "techno bassline with hi-hats",
]
N_FFT, HOP = 1024, 256


def jen1(*args: str) -> None:
    command = [sys.executable, "-m", "jen1cli", *args, "--quiet", "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")


def lufs(audio: torch.Tensor) -> float:
    return float(integrated_loudness(audio, SR))


def span_report(original: torch.Tensor, edited: torch.Tensor, spans: list[tuple[float, float]]):
    """Loudness of each regenerated span beside the kept audio within 2 s on each side."""
    n = edited.shape[-1]
    regenerated = torch.zeros(n, dtype=torch.bool)
    for a, b in spans:
        regenerated[round(a * SR) : round(b * SR)] = True
    rows = []
    for a, b in spans:
        s, e = round(a * SR), round(b * SR)
        near = torch.zeros(n, dtype=torch.bool)
        near[max(0, s - 2 * SR) : s] = True
        near[e : min(n, e + 2 * SR)] = True
        near &= ~regenerated
        around = lufs(edited[:, near])
        rows.append(
            {
                "span": f"{a:g}-{b:g}",
                "span_lufs": lufs(edited[:, s:e]),
                "original_span_lufs": lufs(original[:, s:e]),
                "surroundings_lufs": around,
                "kept_exact": bool(torch.equal(edited[:, ~regenerated], original[:, ~regenerated])),
            }
        )
        rows[-1]["span_vs_surroundings_lu"] = rows[-1]["span_lufs"] - around
    return rows


def inpaint_part(songs: list[str], model: list[str], args, work: Path) -> list[dict]:
    spans = [(3.0, 5.0), (8.0, 9.5)]
    results = []
    for i, song in enumerate(songs):
        audio, _ = load_audio(song, SR)  # [2, N] at 48 kHz
        start = min(round(args.offset * SR), max(0, audio.shape[-1] - round(args.seconds * SR)))
        excerpt = audio[:, start : start + round(args.seconds * SR)]
        if excerpt.shape[-1] < round(args.seconds * SR) or lufs(excerpt) < -60:
            print(f"skipping {song}: shorter than {args.seconds} s or silent", file=sys.stderr)
            continue
        source, out = work / f"song{i}.wav", work / f"song{i}-inpainted.wav"
        sf.write(source, excerpt.T.numpy(), SR, subtype="FLOAT")
        masks = [f"--mask={a:g}-{b:g}" for a, b in spans]
        jen1("inpaint", str(source), *masks, "-o", str(out), "--seed", str(args.seed), *model)
        original = torch.from_numpy(sf.read(source, dtype="float32", always_2d=True)[0].T.copy())
        edited = torch.from_numpy(sf.read(out, dtype="float32", always_2d=True)[0].T.copy())
        row = {
            "song": Path(song).name,
            "file_lufs_before": lufs(original),
            "file_lufs_after": lufs(edited),
            "spans": span_report(original, edited, spans),
        }
        row["file_change_lu"] = row["file_lufs_after"] - row["file_lufs_before"]
        results.append(row)
        print(f"inpainted {row['song']}: {row['file_change_lu']:+.2f} LU", file=sys.stderr)
    return results


def loop_flux(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A loop [C, n] played twice: flux[j] from STFT frame j to j + 1, and each frame's start."""
    twice = torch.from_numpy(np.concatenate([x, x], axis=-1)).mean(0)
    spec = torch.stft(twice, N_FFT, HOP, window=torch.hann_window(N_FFT), center=False,
                      return_complex=True).abs()  # fmt: skip
    flux = (spec[:, 1:] - spec[:, :-1]).clamp(min=0).sum(0)
    return flux, torch.arange(spec.shape[1]) * HOP


def flux_around(flux: torch.Tensor, starts: torch.Tensor, p: int) -> float:
    """The largest flux into, between or out of the frames that straddle sample ``p``."""
    straddles = (starts < p) & (starts + N_FFT > p)
    return float(flux[straddles[1:] | straddles[:-1]].max())


def wrap_flux(x: np.ndarray) -> dict:
    """Flux across the wrap of a loop [C, n] (played twice) against the flux inside it."""
    n = x.shape[-1]
    flux, starts = loop_flux(x)
    inside = starts[1:] + N_FFT <= n
    return {
        "flux_wrap": flux_around(flux, starts, n),
        "flux_inside_p95": float(torch.quantile(flux[inside], 0.95)),
        "flux_inside_median": float(flux[inside].median()),
    }


def loop_part(prompts: list[str], model: list[str], args, work: Path) -> list[dict]:
    results = []
    for i, prompt in enumerate(prompts):
        out = work / f"loop{i}.wav"
        jen1("generate", prompt, "-d", "8", "--loop", "-o", str(out), "--seed", str(args.seed),
             *model)  # fmt: skip
        audio, rate = sf.read(out, dtype="float32", always_2d=True)
        row = {"prompt": prompt, "seconds": audio.shape[0] / rate, **wrap_flux(audio.T)}
        row["seamless"] = row["flux_wrap"] <= row["flux_inside_p95"]
        results.append(row)
        print(f"loop {prompt!r}: wrap {row['flux_wrap']:.2f}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", nargs="+", default=[], help="recordings (globs) to inpaint")
    parser.add_argument("--model", default=None, help="model folder [default: the bundled one]")
    parser.add_argument("--seconds", type=float, default=12.0, help="excerpt length")
    parser.add_argument("--offset", type=float, default=20.0, help="excerpt start in each song")
    parser.add_argument("--prompts", nargs="*", default=LOOP_PROMPTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    songs = sorted(f for pattern in args.songs for f in glob.glob(pattern))
    with tempfile.TemporaryDirectory() as tmp:
        inpainted = inpaint_part(songs, model, args, Path(tmp))
        loops = loop_part(args.prompts, model, args, Path(tmp))

    if inpainted:
        print(
            "| song | file before → after (LUFS) | change "
            "| span: vs surroundings (LU) | rest exact |"
        )
        print("|---|---|---|---|---|")
        for r in inpainted:
            spans = ", ".join(
                f"{s['span']}: {s['span_vs_surroundings_lu']:+.2f}" for s in r["spans"]
            )
            exact = all(s["kept_exact"] for s in r["spans"])
            print(f"| {r['song']} | {r['file_lufs_before']:.1f} → {r['file_lufs_after']:.1f} | "
                  f"{r['file_change_lu']:+.2f} | {spans} | {exact} |")  # fmt: skip
        worst_file = max(abs(r["file_change_lu"]) for r in inpainted)
        worst_span = max(abs(s["span_vs_surroundings_lu"]) for r in inpainted for s in r["spans"])
        print(f"\nworst file change {worst_file:.2f} LU (goal ≤ 1), "
              f"worst span {worst_span:.2f} LU (goal ≤ 2), {len(inpainted)} songs\n")  # fmt: skip
    print("| loop prompt | wrap flux | inside p95 | inside median | seamless |")
    print("|---|---|---|---|---|")
    for r in loops:
        print(f"| {r['prompt']} | {r['flux_wrap']:.2f} | {r['flux_inside_p95']:.2f} | "
              f"{r['flux_inside_median']:.2f} | {r['seamless']} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"inpaint": inpainted, "loops": loops}, indent=1))


if __name__ == "__main__":
    main()
