"""Is what the model generates music at all? Spectral flatness and the frame-rate comb per prompt.

Noise has a flat spectrum (spectral flatness near 1e-2 and above over frames); recorded music's
energy sits in partials (median flatness 1e-6 to 2e-4). The comb is the share of the 20–1000 Hz
energy within ±1 Hz of multiples of the latent frame rate (eval_reconstruction.py's measure).

    python examples/eval_musicality.py --model models/jen1-demo --seconds 10 --seeds 2 \\
        --prompt "ambient synth pad" --prompt "a mellow piano ballad" \\
        --prompt "fast rock with drums and electric guitar" --reference /work/data/real/heldout \\
        --figure musicality.png

``--figure`` draws the log-mel spectrogram of each prompt's first seed (and of the first
reference clip), each in dB re its own peak on one shared colour scale.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_figures import log_mel  # noqa: E402
from eval_reconstruction import frame_rate_buzz  # noqa: E402

DEFAULT_PROMPTS = (
    "ambient synth pad",
    "a mellow piano ballad",
    "fast rock with drums and electric guitar",
)


def median_flatness(audio: np.ndarray, sr: int) -> float:
    """Median over frames of librosa's spectral flatness of the mono mix (n_fft 2048)."""
    import librosa

    y = np.asarray(audio, dtype=np.float32).mean(axis=0)
    flat = librosa.feature.spectral_flatness(y=y, n_fft=2048, hop_length=512)[0]
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)[0]
    loud = rms > 1e-3 * max(float(rms.max()), 1e-12)  # silence is flat but not noise
    return float(np.median(flat[loud])) if loud.any() else float("nan")


def spectrogram_figure(panels: list[tuple[str, np.ndarray, float]], sr: int):
    """One row per (title, audio [C, N], flatness): log-mel, -80..0 dB, one colour bar."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), squeeze=False,
                             layout="constrained")  # fmt: skip
    hz = librosa.mel_frequencies(n_mels=130, fmax=sr / 2)[1:-1]  # band centres (log_mel's bank)
    ticks = [0, 32, 64, 96, 127]
    for ax, (title, audio, flatness) in zip(axes[:, 0], panels, strict=True):
        image = ax.imshow(log_mel(audio, sr), origin="lower", aspect="auto", cmap="magma",
                          vmin=-80, vmax=0, extent=(0, audio.shape[-1] / sr, 0, 128))  # fmt: skip
        ax.set_title(f"{title} (flatness {flatness:.1e})")
        ax.set_yticks([t + 0.5 for t in ticks], [f"{hz[t]:.0f}" for t in ticks])
        ax.set_ylabel("Hz (128 mel bands)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0], label="dB re clip peak")
    return fig


def save_png(fig, path: Path) -> None:
    """Write the figure to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", action="append", help="repeatable; default: three musical prompts")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seeds", type=int, default=2, help="generations per prompt")
    p.add_argument("--reference", help="folder or glob of real recordings for the same figures")
    p.add_argument("--limit", type=int, default=12, help="reference files")
    p.add_argument("--save-audio", type=Path)
    p.add_argument("--out", type=Path, default=Path("musicality.json"))
    p.add_argument("--figure", type=Path, help="PNG of log-mel spectrograms (first seed)")
    p.add_argument("--steps", type=int, help="denoising steps [default: the model's]")
    p.add_argument("--cfg", type=float, help="guidance scale [default: the model's]")
    args = p.parse_args(argv)
    from jen1cli.audio import master, read_audio_segment, save_audio
    from jen1cli.pipeline import Jen1Pipeline, SamplingOptions

    pipe = Jen1Pipeline.from_pretrained(args.model)
    sr, rate = pipe.sample_rate, pipe.frame_rate
    rows, panels = [], []  # panels: (title, audio, flatness) for --figure
    for prompt in args.prompt or DEFAULT_PROMPTS:
        for seed in range(args.seeds):
            options = SamplingOptions(steps=args.steps, seed=seed, guidance_scale=args.cfg)
            audio = pipe.generate([prompt], args.seconds, options)[0]
            audio = master(audio, sr)
            if args.save_audio:
                args.save_audio.mkdir(parents=True, exist_ok=True)
                name = f"{prompt[:40].replace(' ', '-')}-{seed}.wav"
                save_audio(args.save_audio / name, audio, sr)
            row = {
                "prompt": prompt,
                "seed": seed,
                "flatness": median_flatness(audio.numpy(), sr),
                "comb": frame_rate_buzz(audio, sr, rate),
            }
            rows.append(row)
            if args.figure and seed == 0:
                panels.append((repr(prompt), audio.numpy(), row["flatness"]))
            print(f"{prompt!r} seed {seed}: flatness {row['flatness']:.2e}, comb "
                  f"{100 * row['comb']:.1f} %", flush=True)  # fmt: skip
    reference = []
    if args.reference:
        spec = args.reference
        files = (
            sorted(Path(spec).rglob("*.flac"))
            if Path(spec).is_dir()
            else sorted(Path(f) for f in glob.glob(spec))
        )
        for f in files[: args.limit]:
            audio = read_audio_segment(f, 0.0, args.seconds, sr, 2)
            reference.append({"path": str(f), "flatness": median_flatness(audio.numpy(), sr),
                              "comb": frame_rate_buzz(audio, sr, rate)})  # fmt: skip
            if args.figure and len(reference) == 1:
                panels.append((f"reference {f.name}", audio.numpy(), reference[0]["flatness"]))
    summary = {
        "generated": {
            "median_flatness": statistics.median(r["flatness"] for r in rows),
            "mean_comb": statistics.fmean(r["comb"] for r in rows),
        }
    }
    if reference:
        summary["reference"] = {
            "median_flatness": statistics.median(r["flatness"] for r in reference),
            "mean_comb": statistics.fmean(r["comb"] for r in reference),
        }
    args.out.write_text(json.dumps({"summary": summary, "rows": rows, "reference": reference},
                                   indent=1))  # fmt: skip
    for name, s in summary.items():
        print(f"{name}: median spectral flatness {s['median_flatness']:.2e}, "
              f"mean comb {100 * s['mean_comb']:.1f} %")  # fmt: skip
    if args.figure:
        save_png(spectrogram_figure(panels, sr), args.figure)
        print(args.figure)


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    main()
