"""How well does the model's autoencoder reconstruct music? MR-STFT distance and SI-SDR per source.

Each clip is encoded and decoded twice:

- **whitened**: ``pipe.encode`` → ``pipe.decode``, the path the diffusion model really uses: the
  autoencoder latent is whitened and cut to its main ``keep_dim`` directions, then mapped back;
- **raw**: ``model.autoencoder.encode`` → ``decode`` with every latent dimension, so the gap
  between the two rows is what the whitener's dimension reduction costs.

Each ``--audio`` argument is one source (a file, a folder searched recursively, or a glob pattern,
optionally named ``LABEL=...``) and gets its own row. A third measure, **buzz**, is the share of a
clip's 20–1000 Hz energy within ±1 Hz of the multiples of the latent frame rate, for the raw
reconstruction and for the input: a decoder that upsamples from the frame rate can leave a
periodic artefact there (a fixed harmonic series that masks pitch), which MR-STFT barely shows.

From every file, ``--crops`` clips of ``--seconds`` are cut, centred at evenly spaced points (one
crop: the middle of the file, which skips intros and fade-outs; a 10 s file with ``--seconds 10``
is used whole). Files shorter than ``--seconds`` and near-silent crops are skipped and listed.
Example:

    python examples/eval_reconstruction.py --model models/jen1-demo \\
        --audio synthetic=/data/synth/heldout \\
        --audio frozen-bubble='/usr/share/games/frozen-bubble/snd/*zik*.ogg' \\
        --seconds 10 --limit 20 --crops 4 --out recon.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
SILENCE_DBFS = -60.0  # an RMS below this is (near) silence: SI-SDR would only measure noise
_LABEL_RE = re.compile(r"^([\w.-]+)=(.+)$")
COLUMNS = ("mrstft_whitened", "sisdr_whitened", "mrstft_raw", "sisdr_raw", "buzz_raw", "buzz_input")
BUZZ_BAND_HZ = (20.0, 1000.0)
BUZZ_TOLERANCE_HZ = 1.0


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results table."""
    print(message, file=sys.stderr, flush=True)


def parse_source(arg: str) -> tuple[str, list[Path]]:
    """``[LABEL=]PATH_OR_DIR_OR_GLOB`` -> (label, sorted audio files)."""
    m = _LABEL_RE.match(arg)
    label, spec = (m.group(1), m.group(2)) if m and not Path(arg).exists() else (arg, arg)
    path = Path(spec).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(str(path), recursive=True)]
        files = [p for p in files if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    if not files:
        raise SystemExit(f"--audio {arg}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return label, sorted(files)


def crop_starts(duration: float, seconds: float, crops: int) -> list[float]:
    """Start times (s) of up to ``crops`` clips of ``seconds``, centred at (k + ½) / n of the file.

    n is capped so the clips never overlap: a file as long as one clip gives exactly one.
    """
    n = max(1, min(crops, math.floor((duration + 0.01) / seconds)))
    centres = [(k + 0.5) / n * duration for k in range(n)]
    return [max(0.0, min(c - seconds / 2, duration - seconds)) for c in centres]


def rms_dbfs(audio: torch.Tensor) -> float:
    """RMS level in dBFS of [C, N] audio (-inf for digital silence)."""
    rms = float(audio.double().square().mean().sqrt())
    return 20 * math.log10(rms) if rms > 0 else -math.inf


@torch.inference_mode()
def reconstruct(pipe, audio: torch.Tensor) -> dict[str, torch.Tensor]:
    """Audio [C, N] through the whitened and the raw autoencoder path, each back to [C, N]."""
    x = audio[None].to(pipe.device)  # [1, C, N]
    n = x.shape[-1]
    whitened = pipe.decode(pipe.encode(x), n)
    ae = pipe.model.autoencoder
    # Clamped like pipe.decode, so the two rows differ only by the whitener.
    raw = ae.decode(ae.encode(x), n).clamp(-1.0, 1.0)
    return {"whitened": whitened[0].float().cpu(), "raw": raw[0].float().cpu()}


def score(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(MR-STFT distance, SI-SDR in dB averaged over channels) of [C, N] audio."""
    from jen1cli.training.losses import multi_resolution_stft_distance, si_sdr

    mrstft = float(multi_resolution_stft_distance(estimate, reference))
    return mrstft, float(si_sdr(estimate, reference).mean())  # si_sdr: [C]


def frame_rate_buzz(audio: torch.Tensor, sample_rate: int, frame_rate: float) -> float:
    """Share of the mono mix's 20–1000 Hz energy within ±1 Hz of multiples of ``frame_rate``."""
    x = audio.double().mean(dim=0)  # [N]
    power = torch.fft.rfft(x * torch.hann_window(x.shape[-1], dtype=torch.float64)).abs().square()
    freqs = torch.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate, dtype=torch.float64)
    band = (freqs >= BUZZ_BAND_HZ[0]) & (freqs <= BUZZ_BAND_HZ[1])
    harmonics = freqs / frame_rate
    near = (harmonics - harmonics.round()).abs() * frame_rate <= BUZZ_TOLERANCE_HZ
    total = float(power[band].sum())
    return float(power[band & near].sum()) / total if total > 0 else math.nan


def summarise(clips: list[dict]) -> dict:
    """Mean and median of every metric over a source's clips."""
    out: dict = {"clips": len(clips), "files": len({c["path"] for c in clips})}
    for col in COLUMNS:
        values = [c[col] for c in clips if math.isfinite(c[col])]
        out[col] = {
            "mean": statistics.fmean(values) if values else None,
            "median": statistics.median(values) if values else None,
        }
    return out


def table(summary: dict[str, dict]) -> str:
    """One row per source: mean (median) of each metric."""
    heads = (
        "MR-STFT whitened",
        "SI-SDR whitened",
        "MR-STFT raw",
        "SI-SDR raw",
        "buzz raw",
        "buzz input",
    )
    width = max(12, *(len(s) for s in summary))
    lines = [f"{'source':<{width}} {'clips':>5}" + "".join(f"{h:>22}" for h in heads)]
    for source, s in summary.items():
        cells = []
        for col in COLUMNS:
            mean, median = s[col]["mean"], s[col]["median"]
            if mean is None:
                cells.append("n/a")
            elif col.startswith("buzz"):
                cells.append(f"{100 * mean:.0f}% ({100 * median:.0f}%)")
            else:
                unit = " dB" if col.startswith("sisdr") else ""
                cells.append(f"{mean:.2f} ({median:.2f}){unit}")
        lines.append(f"{source:<{width}} {s['clips']:>5}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder or Hub repo id")
    p.add_argument(
        "--audio",
        action="append",
        required=True,
        metavar="[LABEL=]PATH",
        help="a file, folder or glob pattern; repeat for more sources (one row each)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--limit", type=int, default=20, help="files per source (the first N, sorted)")
    p.add_argument("--crops", type=int, default=1, help="clips per file, evenly spread")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", type=Path, default=Path("reconstruction.json"), help="JSON report")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.limit < 1 or args.crops < 1:
        p.error("--seconds must be > 0, --limit and --crops >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Reconstruct every clip of every source, score, and report."""
    args = parse_args(argv)
    from jen1cli.audio import audio_info, read_audio_segment
    from jen1cli.pipeline import Jen1Pipeline

    t0 = time.perf_counter()
    sources = [parse_source(a) for a in args.audio]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"loading {args.model} on {device}")
    pipe = Jen1Pipeline.from_pretrained(args.model, device=device, load_text_encoder=False)
    sr = pipe.sample_rate
    whitener = pipe.model.whitener
    lam = whitener.eigenvalues.double()
    kept = float(lam[: whitener.config.keep_dim].sum() / lam.sum())

    clips: list[dict] = []
    skipped: list[dict] = []
    model_s = 0.0
    for label, files in sources:
        used = 0
        for path in files:
            if used >= args.limit:
                break
            info = audio_info(path)
            # 10 ms of slack: a "10 s" file may be a few samples short after rounding.
            if info.duration_s + 0.01 < args.seconds:
                skipped.append({"source": label, "path": str(path), "reason": "shorter than clip"})
                continue
            took = False
            for start in crop_starts(info.duration_s, args.seconds, args.crops):
                # Equal to the same slice of load_audio (48 kHz stereo), decoding only this part.
                audio = read_audio_segment(path, start, args.seconds, sr, 2)  # [2, N]
                level = rms_dbfs(audio)
                if level < SILENCE_DBFS:
                    skipped.append(
                        {"source": label, "path": str(path), "start_s": start, "reason": "silent"}
                    )
                    continue
                t = time.perf_counter()
                out = reconstruct(pipe, audio)
                model_s += time.perf_counter() - t
                mr_w, sd_w = score(out["whitened"], audio)
                mr_r, sd_r = score(out["raw"], audio)
                clips.append(
                    {
                        "source": label,
                        "path": str(path),
                        "start_s": round(start, 3),
                        "seconds": args.seconds,
                        "file_sample_rate": info.sample_rate,
                        "rms_dbfs": round(level, 1),
                        "mrstft_whitened": mr_w,
                        "sisdr_whitened": sd_w,
                        "mrstft_raw": mr_r,
                        "sisdr_raw": sd_r,
                        "buzz_raw": frame_rate_buzz(out["raw"], sr, pipe.frame_rate),
                        "buzz_input": frame_rate_buzz(audio, sr, pipe.frame_rate),
                    }
                )
                took = True
                log(
                    f"  {label}: {path.name} @ {start:.1f} s — MR-STFT {mr_w:.3f} / {mr_r:.3f}, "
                    f"SI-SDR {sd_w:.1f} / {sd_r:.1f} dB (whitened / raw)"
                )
            used += took

    summary = {label: summarise([c for c in clips if c["source"] == label]) for label, _ in sources}
    wall = time.perf_counter() - t0
    report = {
        "command": shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "model": str(getattr(pipe.model, "source", args.model)),
        "device": device,
        "seconds": args.seconds,
        "crops": args.crops,
        "limit": args.limit,
        "sample_rate": sr,
        "whitener": {
            "latent_dim": whitener.config.latent_dim,
            "keep_dim": whitener.config.keep_dim,
            "kept_variance": kept,
        },
        "summary": summary,
        "wall_s": round(wall, 1),
        "model_s_per_clip": round(model_s / max(len(clips), 1), 3),
        "clips": clips,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(
        f"model {report['model']}: {args.seconds:g} s clips, mean (median); whitened keeps "
        f"{whitener.config.keep_dim}/{whitener.config.latent_dim} latent dims "
        f"({100 * kept:.2f} % of the latent variance)"
    )
    print(table(summary))
    print(
        f"MR-STFT: lower is better, 0 = identical. SI-SDR: higher is better. Buzz: share of the "
        f"20-1000 Hz energy within 1 Hz of multiples of the {pipe.frame_rate:g} Hz frame rate. "
        f"{len(clips)} clips, "
        f"{len(skipped)} skipped, {wall:.0f} s in all. Report: {args.out}"
    )


if __name__ == "__main__":
    main()
