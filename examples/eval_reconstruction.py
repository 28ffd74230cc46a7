"""Does the model's codec keep the music? Notes, key, tempo, timbre and artefacts per source.

Every clip goes through each system and is scored against the input on five rows (issue 10):

- **chroma**: frame-wise correlation of CQT chroma (the notes, in time; 1 = identical);
- **key**: share of clips whose estimated key (Krumhansl profiles on CQT chroma) agrees with the
  input's, exactly or as its relative major/minor;
- **tempo**: share of clips whose beat-tracker tempo is within 8 % of the input's;
- **log-mel**: mean |ln mel| difference (80 bands, n_fft 2048, hop 512, RMS matched; 0 = same);
- **comb**: share of the 20–1000 Hz energy within ±1 Hz of multiples of the latent frame rate (a
  decoder that upsamples from the frame rate leaves a harmonic series there); the input's share is
  shown beside it. MR-STFT distance is reported as well.

Systems: each ``--model`` through the path the diffusion model uses (``pipe.encode`` → whitened
latent → ``pipe.decode``), and with ``--anchors`` two references on the same clips:
``griffin-lim (true |STFT|)`` (32 Griffin-Lim iterations, n_fft 2048, hop 512, from the input's
own magnitudes: the ceiling of any magnitude decoder) and ``fixed mel 64/ch`` (a stereo mel at 50
frames/s, 64 bands per channel = 6,400 floats/s, inverted by the filterbank's pseudo-inverse +
Griffin-Lim: the bar a learned codec of that size must beat).

Each ``--audio`` argument is one source (a file, a folder searched recursively, or a glob pattern,
optionally named ``LABEL=...``) and gets its own table. From every file, ``--crops`` clips of
``--seconds`` are cut at evenly spaced points; near-silent crops are skipped. Example:

    python examples/eval_reconstruction.py --model models/jen1-demo --model old=/tmp/old-demo \
        --anchors --audio real=/work/data/real/heldout --audio synthetic=/work/data/synth/heldout \
        --seconds 10 --limit 40 --out recon.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import music_analysis as ma  # noqa: E402

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
SILENCE_DBFS = -60.0  # an RMS below this is (near) silence: nothing to compare
_LABEL_RE = re.compile(r"^([\w.-]+)=(.+)$")
COLUMNS = ("chroma", "key", "tempo", "log_mel", "comb", "mrstft")
BUZZ_BAND_HZ = (20.0, 1000.0)
BUZZ_TOLERANCE_HZ = 1.0
GL_TRUE = "griffin-lim (true |STFT|)"
FIXED_MEL = "fixed mel 64/ch"


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
def through_model(pipe, audio: torch.Tensor) -> torch.Tensor:
    """Audio [C, N] -> whitened latent -> audio [C, N], as the diffusion model sees it."""
    x = audio[None].to(pipe.device)
    return pipe.decode(pipe.encode(x), x.shape[-1])[0].float().cpu()


def griffin_lim_true(audio: torch.Tensor) -> torch.Tensor:
    """The input's own |STFT| (n_fft 2048, hop 512) with 32 Griffin-Lim iterations."""
    import torchaudio

    window = torch.hann_window(2048)
    mag = torch.stft(audio, 2048, 512, window=window, return_complex=True).abs()
    return torchaudio.functional.griffinlim(
        mag, window, 2048, 512, 2048, 1.0, 32, 0.99, audio.shape[-1], True
    )


def fixed_mel(audio: torch.Tensor, sr: int, bands: int = 64, frame_rate: int = 50) -> torch.Tensor:
    """Stereo mel at ``frame_rate`` with ``bands`` per channel, back by pseudo-inverse + GL."""
    import torchaudio

    n_fft, hop = 2048, sr // frame_rate
    window = torch.hann_window(n_fft)
    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, bands, sr)  # [bins, m]
    power = torch.stft(audio, n_fft, hop, window=window, return_complex=True).abs().square()
    mel = fb.T @ power  # [C, bands, F]: the 6,400 floats per second
    rebuilt = (torch.linalg.pinv(fb.T) @ mel).clamp_min(0).sqrt()
    # Griffin-Lim at 4x overlap: repeat each frame at a quarter of the hop.
    fine = rebuilt.repeat_interleave(4, dim=-1)[..., : (audio.shape[-1] // (hop // 4)) + 1]
    return torchaudio.functional.griffinlim(
        fine, window, n_fft, hop // 4, n_fft, 1.0, 32, 0.99, audio.shape[-1], True
    )


class Reference:
    """What is measured on the input once: key, tempo, comb."""

    def __init__(self, audio: torch.Tensor, sr: int, frame_rate: float) -> None:
        self.audio = audio
        self.np = audio.numpy()
        self.key = ma.estimate_key(self.np, sr)
        self.tempo = ma.estimate_tempo(self.np, sr)
        self.comb = frame_rate_buzz(audio, sr, frame_rate)


def score(estimate: torch.Tensor, ref: Reference, sr: int, frame_rate: float) -> dict:
    """The report's rows for one system's reconstruction of one clip."""
    from jen1cli.training.losses import multi_resolution_stft_distance

    est = estimate.clamp(-1, 1)
    est_np = est.numpy()
    return {
        "chroma": ma.chroma_correlation(ref.np, est_np, sr),
        "key": float(ma.key_match(ma.estimate_key(est_np, sr), ref.key) != "none"),
        "tempo": float(ma.tempo_match(ma.estimate_tempo(est_np, sr), ref.tempo)),
        "log_mel": ma.log_mel_l1(ref.np, est_np, sr),
        "comb": frame_rate_buzz(est, sr, frame_rate),
        "mrstft": float(multi_resolution_stft_distance(est, ref.audio)),
    }


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
    """Mean of every row over a source's clips, per system."""
    systems = sorted({s for c in clips for s in c["systems"]}, key=_system_order(clips))
    out: dict = {"clips": len(clips), "input_comb": _mean([c["input_comb"] for c in clips])}
    for system in systems:
        rows = [c["systems"][system] for c in clips if system in c["systems"]]
        out[system] = {col: _mean([r[col] for r in rows]) for col in COLUMNS}
    return out


def _system_order(clips: list[dict]):
    first = {}
    for c in clips:
        for i, s in enumerate(c["systems"]):
            first.setdefault(s, i)
    return lambda s: first[s]


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def table(label: str, s: dict) -> str:
    """One source: one row per system."""
    heads = ("chroma", "key", "tempo", "log-mel L1", "comb", "MR-STFT")
    systems = [k for k in s if k not in ("clips", "input_comb")]
    width = max(28, *(len(k) for k in systems))
    comb_in = s["input_comb"]
    lines = [
        f"{label}: {s['clips']} clips, input comb {100 * comb_in:.1f} %"
        if comb_in is not None
        else f"{label}: {s['clips']} clips",
        f"{'system':<{width}}" + "".join(f"{h:>12}" for h in heads),
    ]
    for system in systems:
        cells = []
        for col in COLUMNS:
            v = s[system][col]
            if v is None:
                cells.append("n/a")
            elif col in ("key", "tempo", "comb"):
                cells.append(f"{100 * v:.1f} %" if col == "comb" else f"{100 * v:.0f} %")
            else:
                cells.append(f"{v:.3f}")
        lines.append(f"{system:<{width}}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]MODEL",
        help="model folder or Hub repo id; repeat to compare",
    )
    p.add_argument("--anchors", action="store_true", help="add the Griffin-Lim and fixed-mel rows")
    p.add_argument(
        "--audio",
        action="append",
        required=True,
        metavar="[LABEL=]PATH",
        help="a file, folder or glob pattern; repeat for more sources (one table each)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--limit", type=int, default=20, help="files per source (the first N, sorted)")
    p.add_argument("--crops", type=int, default=1, help="clips per file, evenly spread")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", type=Path, default=Path("reconstruction.json"), help="JSON report")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.limit < 1 or args.crops < 1:
        p.error("--seconds must be > 0, --limit and --crops >= 1")
    if not args.model and not args.anchors:
        p.error("give at least one --model, or --anchors")
    return args


def _label(arg: str) -> tuple[str, str]:
    m = _LABEL_RE.match(arg)
    if m and not Path(arg).exists():
        return m.group(1), m.group(2)
    return Path(arg).name or arg, arg


def main(argv: list[str] | None = None) -> None:
    """Reconstruct every clip through every system, score, and report."""
    args = parse_args(argv)
    from jen1cli.audio import audio_info, read_audio_segment
    from jen1cli.pipeline import Jen1Pipeline

    t0 = time.perf_counter()
    sources = [parse_source(a) for a in args.audio]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipes = {}
    for arg in args.model:
        label, spec = _label(arg)
        log(f"loading {spec} on {device}")
        pipes[label] = Jen1Pipeline.from_pretrained(spec, device=device, load_text_encoder=False)
    sr = 48_000
    frame_rate = next(iter(pipes.values())).frame_rate if pipes else 50.0
    systems = {}
    if args.anchors:
        systems[GL_TRUE] = griffin_lim_true
        systems[FIXED_MEL] = lambda a: fixed_mel(a, sr)
    for label, pipe in pipes.items():
        systems[label] = lambda a, pipe=pipe: through_model(pipe, a)

    clips: list[dict] = []
    skipped: list[dict] = []
    seconds_in = {name: 0.0 for name in systems}
    for label, files in sources:
        used = 0
        for path in files:
            if used >= args.limit:
                break
            info = audio_info(path)
            if info.duration_s + 0.01 < args.seconds:
                skipped.append({"source": label, "path": str(path), "reason": "shorter than clip"})
                continue
            took = False
            for start in crop_starts(info.duration_s, args.seconds, args.crops):
                audio = read_audio_segment(path, start, args.seconds, sr, 2)  # [2, N]
                if rms_dbfs(audio) < SILENCE_DBFS:
                    skipped.append({"source": label, "path": str(path), "reason": "silent"})
                    continue
                ref = Reference(audio, sr, frame_rate)
                clip = {
                    "source": label,
                    "path": str(path),
                    "start_s": round(start, 3),
                    "input_key": " ".join(ref.key),
                    "input_tempo": ref.tempo,
                    "input_comb": ref.comb,
                    "systems": {},
                }
                for name, system in systems.items():
                    t = time.perf_counter()
                    out = system(audio)
                    seconds_in[name] += time.perf_counter() - t
                    clip["systems"][name] = score(out, ref, sr, frame_rate)
                clips.append(clip)
                took = True
                log(
                    f"  {label}: {path.name} @ {start:.1f} s — chroma "
                    + ", ".join(f"{n} {r['chroma']:.2f}" for n, r in clip["systems"].items())
                )
            used += took

    summary = {label: summarise([c for c in clips if c["source"] == label]) for label, _ in sources}
    report = {
        "command": shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "models": {k: str(getattr(p.model, "source", k)) for k, p in pipes.items()},
        "device": device,
        "seconds": args.seconds,
        "summary": summary,
        "wall_s": round(time.perf_counter() - t0, 1),
        "system_s_per_clip": {k: round(v / max(len(clips), 1), 3) for k, v in seconds_in.items()},
        "clips": clips,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    for label, s in summary.items():
        print(table(label, s))
        print()
    print(
        "chroma: frame-wise CQT chroma correlation (1 = same notes). key / tempo: share of clips "
        "agreeing with the input (key exact or relative; tempo within 8 %). log-mel L1: 0 = same. "
        f"comb: share of 20-1000 Hz energy on multiples of {frame_rate:g} Hz. "
        f"{len(clips)} clips, {len(skipped)} skipped. Report: {args.out}"
    )


if __name__ == "__main__":
    main()
