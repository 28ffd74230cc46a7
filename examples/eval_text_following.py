"""Does generated music follow its prompt? Tempo, key, mode and drums of held-out captions.

For each of the first ``--count`` rows of a held-out split (``metadata.jsonl`` with ``text``,
``bpm``, ``tonic``, ``mode`` and, from ``make_dataset.py``, ``drums``), one clip is generated from
the caption; its tempo (librosa beat tracking), key and mode (chroma + Krumhansl–Kessler
profiles) and whether it has drums (percussive energy above 5 kHz), all from
``music_analysis.py``, are estimated and compared with the row's labels. Four columns put the
score in context:

- **matched**: each clip against the labels of the prompt it was generated from;
- **shuffled**: each clip against the labels of another row (a fixed-seed derangement), i.e. the
  same model's score on shuffled prompts — the chance baseline;
- **real-audio ceiling**: the same estimators on the held-out recordings against their own labels;
- **via autoencoder**: the held-out recordings encoded and decoded by the model's own
  autoencoder and whitening — the best any generator on these latents can score, since every
  generated clip goes through that decoder.

A caption may leave out an attribute (the data recipe drops tempo and key each 10 % of the time,
and names the drums only sometimes), so a metric counts only rows whose caption states it — see
``text_following_scoring.py`` for what "states" means per metric; rows that do not are still
generated and reported per clip.

``--snapshots GLOB`` adds a learning curve: the diffusion EMA snapshots a training run keeps
(``jen1 train --snapshot-every N`` writes ``RUN/snapshots/diffusion-stepNNNNNNN.safetensors``) are
loaded into the U-Net one by one, and each generates the same clips (same seeds), scored matched
and shuffled, against samples seen = step × ``--train-batch``. The ceilings are computed once.
Example:

    python examples/eval_text_following.py --model models/jen1-demo \\
        --heldout /data/synth/heldout --count 80 --seconds 10 --batch 8 --out tf.json \\
        --snapshots 'RUN/snapshots/diffusion-step*.safetensors' --train-batch 16
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from music_analysis import DRUMS_THRESHOLD_DB, estimate_key, estimate_tempo, percussive_high_db
from text_following_scoring import (
    METRICS,
    compare,
    curve_table,
    derangement,
    prompt_states,
    score_generated,
    score_recordings,
    table,
)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results tables."""
    print(message, file=sys.stderr, flush=True)


def load_rows(heldout: Path, count: int) -> list[dict]:
    """The first ``count`` rows of ``heldout/metadata.jsonl``."""
    lines = (heldout / "metadata.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][:count]
    if len(rows) < 2:
        raise SystemExit(f"need at least 2 rows in {heldout}/metadata.jsonl, found {len(rows)}")
    return rows


def row_id(row: dict) -> str:
    """A row's id, or its file name without the extension."""
    return str(row.get("id") or Path(row["file_name"]).stem)


def analyse(audio: np.ndarray, sr: int) -> dict:
    """Estimated tempo (BPM), key ("D minor") and drums (bool, and the dB it rests on) of [C, T]."""
    drums_db = percussive_high_db(audio, sr)
    return {
        "tempo": estimate_tempo(audio, sr),
        "key": " ".join(estimate_key(audio, sr)),
        "drums": drums_db > DRUMS_THRESHOLD_DB,
        "drums_db": drums_db,
    }


def shown(est: dict) -> dict:
    """An estimate, rounded for the report."""
    return est | {"tempo": round(est["tempo"], 1), "drums_db": round(est["drums_db"], 1)}


def generate_clips(
    pipe, rows: list[dict], args: argparse.Namespace, save_to: Path | None = None
) -> list[np.ndarray]:
    """One clip per caption, ``--batch`` at a time; batch b samples with seed ``--seed + b``.

    Clips are mastered as ``jen1 generate`` writes them (DC removed, -14 LUFS), so the scores are
    those of the files a user gets; ``save_to`` also keeps them as WAVs there.
    """
    from jen1cli.audio import master, save_audio
    from jen1cli.pipeline import SamplingOptions

    sr = pipe.sample_rate
    clips: list[np.ndarray] = []
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    for b, batch in enumerate(batches):
        options = SamplingOptions(steps=args.steps, guidance_scale=args.cfg, seed=args.seed + b)
        start = time.perf_counter()

        def progress(stage: str, done: int, total: int, b: int = b) -> None:
            if done == total or done % 10 == 0:  # one line, rewritten in place
                line = f"  batch {b + 1}/{len(batches)}: {stage} {done}/{total}"
                print(f"\r{line:<50}", end="", file=sys.stderr, flush=True)

        audio = pipe.generate([r["text"] for r in batch], args.seconds, options, progress).cpu()
        for row, clip in zip(batch, audio, strict=True):
            clip = master(clip, sr)  # [2, N]
            if save_to:
                save_audio(save_to / f"{row_id(row)}.wav", clip, sr, overwrite=True)
            clips.append(clip.numpy())
        took = time.perf_counter() - start
        done = f"  batch {b + 1}/{len(batches)}: {len(batch)} clips in {took:.1f} s"
        log(f"\r{done:<50}")
    return clips


def generate_and_analyse(
    pipe, rows: list[dict], args: argparse.Namespace, save_to: Path | None = None
) -> tuple[list[dict], float, float]:
    """Estimates of one clip per row, and the seconds generation and analysis took."""
    start = time.perf_counter()
    clips = generate_clips(pipe, rows, args, save_to)
    middle = time.perf_counter()
    estimates = [analyse(clip, pipe.sample_rate) for clip in clips]
    return estimates, middle - start, time.perf_counter() - middle


def real_audio(heldout: Path, row: dict, seconds: float) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of a held-out recording, [C, T] — the span its caption describes."""
    audio, sr = sf.read(heldout / row["file_name"], dtype="float32", always_2d=True)
    return audio[: round(seconds * sr)].T, sr


def autoencoded_audio(pipe, heldout: Path, row: dict, seconds: float) -> np.ndarray:
    """A held-out recording's first ``seconds`` through the model's autoencoder and whitening."""
    from jen1cli.audio import load_audio

    sr = pipe.sample_rate
    channels = pipe.model.config.autoencoder.audio_channels
    audio, _ = load_audio(heldout / row["file_name"], sr, channels)
    audio = audio[:, : round(seconds * sr)]
    return pipe.decode(pipe.encode(audio[None]), audio.shape[-1])[0].cpu().numpy()


def snapshot_step(path: Path) -> int:
    """A snapshot's training step: its metadata's ``step``, else the ``stepNNN`` in its name."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "step" in meta:
        return int(meta["step"])
    found = re.search(r"step(\d+)", path.stem)
    if not found:
        raise SystemExit(f"{path}: no step in its metadata or its name")
    return int(found.group(1))


def find_snapshots(pattern: str) -> list[tuple[int, Path]]:
    """(step, path) of every file the glob matches, by step."""
    paths = [Path(p) for p in glob.glob(pattern)]
    if not paths:
        raise SystemExit(f"--snapshots {pattern!r} matches no file")
    return sorted((snapshot_step(p), p) for p in paths)


def learning_curve(pipe, rows, stated, perm, args: argparse.Namespace) -> list[dict]:
    """Matched and shuffled scores of the clips each snapshot's U-Net generates."""
    from safetensors.torch import load_file

    from jen1cli.model import load_weights

    snapshots = find_snapshots(args.snapshots)
    curve = []
    for k, (step, path) in enumerate(snapshots):
        log(f"snapshot {k + 1}/{len(snapshots)}: step {step} ({path.name})")
        load_weights(pipe.model.unet, load_file(str(path)))  # cast to the U-Net's dtype/device
        save_to = args.save_audio / f"step{step:07d}" if args.save_audio else None
        if save_to:
            save_to.mkdir(parents=True, exist_ok=True)
        estimates, gen_s, analysis_s = generate_and_analyse(pipe, rows, args, save_to)
        curve.append(
            {
                "step": step,
                "samples_seen": step * args.train_batch,
                "snapshot": str(path),
                "generate_s": round(gen_s, 1),
                "analysis_s": round(analysis_s, 1),
                "totals": score_generated(estimates, rows, stated, perm),
                "estimates": {row_id(r): shown(e) for r, e in zip(rows, estimates, strict=True)},
            }
        )
    return curve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder or Hub repo id")
    p.add_argument("--heldout", type=Path, required=True, help="folder with metadata.jsonl")
    p.add_argument("--count", type=int, default=40, help="held-out rows to use (the first N)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each generated clip")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (model default)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (model default)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the first batch")
    p.add_argument("--shuffle-seed", type=int, default=0, help="seed of the derangement")
    p.add_argument("--batch", type=int, default=4, help="prompts generated together")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--save-audio", type=Path, help="also keep the generated WAVs here")
    p.add_argument("--out", type=Path, default=Path("text_following.json"), help="JSON report")
    p.add_argument(
        "--codec-only",
        action="store_true",
        help="generate nothing: score only the held-out clips through the autoencoder (and as "
        "they are), to judge an autoencoder before a diffusion model is trained on it",
    )
    p.add_argument(
        "--snapshots",
        metavar="GLOB",
        help="also score each diffusion EMA snapshot these files hold (quote the glob, e.g. "
        "'RUN/snapshots/diffusion-step*.safetensors'): a learning curve",
    )
    p.add_argument(
        "--train-batch",
        type=int,
        default=16,
        help="examples per optimizer step of the training run (batch size x grad accumulation "
        "x processes): samples seen = step x this",
    )
    args = p.parse_args(argv)
    if args.codec_only and args.save_audio:
        p.error("--save-audio keeps generated clips, and --codec-only generates none: drop one")
    if args.codec_only and args.snapshots:
        p.error("--snapshots generates clips, and --codec-only generates none: drop one")
    return args


def main(argv: list[str] | None = None) -> None:
    """Generate, analyse, score and report."""
    args = parse_args(argv)
    from jen1cli.pipeline import Jen1Pipeline

    # librosa warns about near-silent clips (no pitch to tune to); the estimate still stands.
    warnings.filterwarnings("ignore", category=UserWarning, module="librosa")

    t0 = time.perf_counter()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = load_rows(args.heldout, args.count)
    if args.save_audio:
        args.save_audio.mkdir(parents=True, exist_ok=True)
    stated = [prompt_states(r) for r in rows]
    perm = derangement(len(rows), args.shuffle_seed)
    log(f"loading {args.model} on {device}")
    pipe = Jen1Pipeline.from_pretrained(args.model, device=device)
    diffusion = pipe.config.diffusion
    steps = args.steps or diffusion.num_inference_steps
    cfg = diffusion.guidance_scale if args.cfg is None else args.cfg

    log("estimating tempo, key and drums of the real and the autoencoded clips")
    t_an = time.perf_counter()
    real, autoencoded = [], []
    for i, row in enumerate(rows):
        real.append(analyse(*real_audio(args.heldout, row, args.seconds)))
        via = autoencoded_audio(pipe, args.heldout, row, args.seconds)
        autoencoded.append(analyse(via, pipe.sample_rate))
        if (i + 1) % 10 == 0 or i + 1 == len(rows):
            log(f"  analysed {i + 1}/{len(rows)}")
    analysis_s = time.perf_counter() - t_an

    # the model's own weights first: the learning curve then overwrites the U-Net's
    estimates, gen_s = [], 0.0
    if not args.codec_only:
        log(f"generating {len(rows)} clips of {args.seconds:g} s ({steps} steps, cfg {cfg:g})")
        estimates, gen_s, more = generate_and_analyse(pipe, rows, args, args.save_audio)
        analysis_s += more
    curve = learning_curve(pipe, rows, stated, perm, args) if args.snapshots else []

    # n = 0 with --codec-only: the generated clips' columns stay empty (n/a)
    totals = score_generated(estimates, rows, stated, perm) | {
        "via_autoencoder": score_recordings(autoencoded, rows, stated),
        "ceiling": score_recordings(real, rows, stated),
    }
    clips_report = []
    for i, row in enumerate(rows):
        clip = {
            "id": row_id(row),
            "prompt": row["text"],
            "genre": row.get("genre"),
            "labels": {
                "bpm": row["bpm"],
                "key": f"{row['tonic']} {row['mode']}",
                "drums": row.get("drums"),
            },
            "prompt_states": stated[i],
            "real_estimate": shown(real[i]),
            "real": compare(real[i], row),
            "via_autoencoder_estimate": shown(autoencoded[i]),
            "via_autoencoder": compare(autoencoded[i], row),
        }
        if estimates:
            other = rows[perm[i]]
            clip |= {
                "estimate": shown(estimates[i]),
                "matched": compare(estimates[i], row),
                "shuffled_with": row_id(other),
                "shuffled": compare(estimates[i], other),
            }
        clips_report.append(clip)
    wall = time.perf_counter() - t0
    report = {
        "command": shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "model": str(getattr(pipe.model, "source", args.model)),
        "heldout": str(args.heldout),
        "count": len(rows),
        "seconds": args.seconds,
        "codec_only": args.codec_only,
        # how the clips were generated: null with --codec-only, which generates none
        **{
            key: None if args.codec_only else value
            for key, value in {
                "steps": steps,
                "guidance_scale": cfg,
                "scheduler": diffusion.scheduler,
                "seed": args.seed,
                "shuffle_seed": args.shuffle_seed,
                "batch": args.batch,
                "generate_s": round(gen_s, 1),
                "generate_s_per_clip": round(gen_s / len(rows), 2),
            }.items()
        },
        "device": device,
        "drums_threshold_db": DRUMS_THRESHOLD_DB,
        "metrics": {m: d for m, (d, _) in METRICS.items()},
        "totals": totals,
        # one point per snapshot, the ceilings above being the same for all
        "learning_curve": {"train_batch": args.train_batch, "points": curve} if curve else None,
        "wall_s": round(wall, 1),
        "analysis_s": round(analysis_s, 1),  # of the --model clips and the recordings
        "clips": clips_report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    n = {k: sum(s[k] for s in stated) for k in stated[0]}
    how = "nothing generated" if args.codec_only else f"{steps} steps, cfg {cfg:g}"
    print(
        f"{len(rows)} prompts ({n['tempo']} state a tempo, {n['key']} a key, {n['mode']} a "
        f"mode, {n['drums']} whether there are drums), {args.seconds:g} s, {how}, "
        f"model {report['model']}"
    )
    print(table(totals))
    if not args.codec_only:
        print(
            f"shuffled: each clip vs the labels of another prompt (derangement, seed "
            f"{args.shuffle_seed}); all pairs: the same over every other prompt. "
            f"{gen_s / len(rows):.1f} s/clip to generate."
        )
    if curve:
        print(
            f"\nLearning curve, matched / shuffled (samples seen = step x {args.train_batch}; "
            "'model' = the weights --model loaded):\n"
        )
        print(curve_table(curve, totals))
    print(f"{wall:.0f} s in all. Report: {args.out}")


if __name__ == "__main__":
    main()
