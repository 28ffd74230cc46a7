"""Figures for a codec's model card: spectrograms (input vs. round trip) and a learning curve.

    python examples/codec_figures.py spectrograms --model models/jen1-demo \\
        --audio /work/data/real/heldout/a.flac --audio b.flac --out spectrograms.png
    python examples/codec_figures.py curve --model models/jen1-demo \\
        --snapshots /work/runs/codec1-snapshots --audio '/work/data/real/heldout/*-0.flac' \\
        --limit 12 --out curve.png

``curve`` loads each ``ema-STEP.safetensors`` of ``--snapshots`` (the autoencoder's EMA weights
at that training step) into the model and scores the round trip of the same clips at every step
(chroma correlation and log-mel L1, as in eval_reconstruction.py); it writes the PNG and a JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import music_analysis as ma  # noqa: E402

SR = 48_000


def _files(patterns: list[str], limit: int) -> list[Path]:
    files = sorted({Path(f) for p in patterns for f in glob.glob(p)})
    if not files:
        raise SystemExit(f"--audio {patterns}: no files")
    return files[:limit]


def _round_trip(pipe, audio: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return pipe.decode(pipe.encode(audio[None]), audio.shape[-1])[0].numpy()


def log_mel(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """128-band log-mel spectrogram of the mono mix [mels, frames], dB re its peak (-80..0)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio.mean(axis=0), sr=sr, n_fft=2048, hop_length=512, n_mels=128
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=80)


def spectrograms(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jen1cli.audio import read_audio_segment
    from jen1cli.pipeline import Jen1Pipeline

    pipe = Jen1Pipeline.from_pretrained(args.model, load_text_encoder=False)
    files = _files(args.audio, args.limit)
    fig, axes = plt.subplots(len(files), 2, figsize=(12, 2.6 * len(files)), squeeze=False)
    for row, path in zip(axes, files, strict=True):
        audio = read_audio_segment(path, args.start, args.seconds, SR, 2)
        decoded = _round_trip(pipe, audio)
        chroma = ma.chroma_correlation(audio.numpy(), decoded, SR)
        for ax, y, title in ((row[0], audio.numpy(), "input"), (row[1], decoded, "round trip")):
            ax.imshow(log_mel(y), origin="lower", aspect="auto", cmap="magma",
                      extent=(0, y.shape[-1] / SR, 0, 128))  # fmt: skip
            ax.set_title(
                f"{path.stem}: {title}" + (f" (chroma {chroma:.2f})" if ax is row[1] else "")
            )
            ax.set_ylabel("mel band")
        row[1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(args.out)


def curve(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.torch import load_file

    from jen1cli.audio import read_audio_segment
    from jen1cli.pipeline import Jen1Pipeline

    pipe = Jen1Pipeline.from_pretrained(args.model, load_text_encoder=False)
    ae = pipe.model.autoencoder
    keys = set(ae.state_dict())
    snaps = sorted(
        (int(m[1]), p)
        for p in Path(args.snapshots).glob("ema-*.safetensors")
        if (m := re.match(r"ema-(\d+)\.safetensors", p.name))
    )
    clips = [
        read_audio_segment(f, args.start, args.seconds, SR, 2)
        for f in _files(args.audio, args.limit)
    ]
    rows = []
    for step, path in snaps:
        ae.load_state_dict({k: v for k, v in load_file(path).items() if k in keys})
        scores = [
            (ma.chroma_correlation(c.numpy(), d, SR), ma.log_mel_l1(c.numpy(), d, SR))
            for c in clips
            for d in [_round_trip(pipe, c)]
        ]
        chroma, log_mel = np.nanmean(np.array(scores), axis=0)
        rows.append({"step": step, "chroma": float(chroma), "log_mel": float(log_mel)})
        print(f"step {step}: chroma {chroma:.3f}, log-mel L1 {log_mel:.3f}", flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["chroma"] for r in rows], "o-", label="chroma correlation (↑)")
    ax.plot(steps, [r["log_mel"] for r in rows], "s-", label="log-mel L1 (↓)")
    ax.set_xlabel("training step (batch 16 × 2 s)")
    ax.set_title(f"codec on {len(clips)} held-out real clips")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(args.out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("spectrograms", "curve"))
    p.add_argument("--model", required=True)
    p.add_argument("--audio", action="append", required=True, help="file or glob; repeatable")
    p.add_argument("--snapshots", help="folder of ema-STEP.safetensors (curve)")
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.what == "curve" and not args.snapshots:
        p.error("curve needs --snapshots")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    (spectrograms if args.what == "spectrograms" else curve)(args)


if __name__ == "__main__":
    main()
