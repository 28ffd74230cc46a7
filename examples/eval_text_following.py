"""Does generated music follow its prompt? Tempo and key of clips made from held-out captions.

For each of the first ``--count`` rows of a held-out split (``metadata.jsonl`` with ``text``,
``bpm``, ``tonic``, ``mode``), one clip is generated from the caption; its tempo (librosa beat
tracking) and key (chroma + Krumhansl–Kessler profiles, ``music_analysis.py``) are estimated and
compared with the row's labels. Four columns put the score in context:

- **matched**: each clip against the labels of the prompt it was generated from;
- **shuffled**: each clip against the labels of another row (a fixed-seed derangement), i.e. the
  same model's score on shuffled prompts — the chance baseline;
- **real-audio ceiling**: the same estimators on the held-out recordings against their own labels;
- **via autoencoder**: the held-out recordings encoded and decoded by the model's own
  autoencoder and whitening — the best any generator on these latents can score, since every
  generated clip goes through that decoder.

A caption may leave out the tempo or the key (the data recipe drops each 10 % of the time), so a
metric counts only rows whose caption states that attribute; rows that do not are still generated
and reported per clip. Example:

    python examples/eval_text_following.py --model models/jen1-demo \\
        --heldout /data/synth/heldout --count 80 --seconds 10 --batch 8 --out tf.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from music_analysis import estimate_key, estimate_tempo, key_match, parse_key, tempo_match

# "120 BPM", "120bpm", "120 beats per minute" — every tempo spelling of the data recipe.
_TEMPO_RE = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
# "D minor", "F# major", "Eb minor", "B flat minor", "C sharp major".
_KEY_RE = re.compile(r"\b([A-G](?:#|♯|b|♭)?(?:\s+(?:sharp|flat))?)\s+(major|minor)\b")

METRICS = {  # name -> (description, test on one scored pair)
    "tempo": ("tempo within 8 %", lambda s: s["tempo_strict"]),
    "tempo_octave": ("tempo within 8 %, half/double ok", lambda s: s["tempo_octave"]),
    "key_exact": ("key exact", lambda s: s["key_match"] == "exact"),
    "key_relative": ("key exact or relative", lambda s: s["key_match"] != "none"),
}
# Which caption attribute a metric needs stated.
_NEEDS = {"tempo": "tempo", "tempo_octave": "tempo", "key_exact": "key", "key_relative": "key"}


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results table."""
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


def states_tempo(text: str, bpm: float) -> bool:
    """Whether the caption states this tempo in BPM."""
    return any(int(m.group(1)) == round(bpm) for m in _TEMPO_RE.finditer(text))


def states_key(text: str, tonic: str, mode: str) -> bool:
    """Whether the caption names this key, in any spelling (``C#``, ``C sharp``...)."""
    wanted = parse_key((tonic, mode))
    for m in _KEY_RE.finditer(text):
        try:
            if parse_key((m.group(1), m.group(2))) == wanted:
                return True
        except ValueError:
            continue
    return False


def derangement(n: int, seed: int) -> list[int]:
    """A random permutation of range(n) with no fixed point (rejection sampling, n >= 2)."""
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def analyse(audio: np.ndarray, sr: int) -> dict:
    """Estimated tempo (BPM) and key ("D minor") of [C, T] audio."""
    return {"tempo": estimate_tempo(audio, sr), "key": " ".join(estimate_key(audio, sr))}


def compare(est: dict, row: dict) -> dict:
    """Score estimates against one row's labels."""
    key = f"{row['tonic']} {row['mode']}"
    return {
        "tempo_strict": tempo_match(est["tempo"], row["bpm"]),
        "tempo_octave": tempo_match(est["tempo"], row["bpm"], octave=True),
        "key_match": key_match(est["key"], key),
    }


def rate(pairs: list[tuple[dict, dict, dict]], metric: str) -> dict:
    """Hits / n over (estimate, row, stated) pairs whose row states the metric's attribute."""
    test, need = METRICS[metric][1], _NEEDS[metric]
    scored = [compare(est, row) for est, row, stated in pairs if stated[need]]
    hits = sum(bool(test(s)) for s in scored)
    return {"hits": hits, "n": len(scored), "rate": hits / len(scored) if scored else None}


def generate_clips(pipe, rows: list[dict], args: argparse.Namespace) -> list[np.ndarray]:
    """One clip per caption, ``--batch`` at a time; batch b samples with seed ``--seed + b``.

    Clips are mastered as ``jen1 generate`` writes them (DC removed, -14 LUFS), so the scores are
    those of the files a user gets.
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
            if args.save_audio:
                save_audio(args.save_audio / f"{row_id(row)}.wav", clip, sr, overwrite=True)
            clips.append(clip.numpy())
        took = time.perf_counter() - start
        done = f"  batch {b + 1}/{len(batches)}: {len(batch)} clips in {took:.1f} s"
        log(f"\r{done:<50}")
    return clips


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


def table(totals: dict) -> str:
    """The results as a plain-text table: one row per metric, one column per comparison."""
    cols = ("matched", "shuffled", "all_pairs", "via_autoencoder", "ceiling")
    heads = ("matched", "shuffled", "(all pairs)", "via autoencoder", "real audio")
    lines = [f"{'metric':<34}" + "".join(f"{h:>20}" for h in heads)]
    for metric, (description, _) in METRICS.items():
        cells = []
        for col in cols:
            r = totals[col][metric]
            if r["rate"] is None:
                cells.append("n/a")
            elif col == "all_pairs":  # counts are of pairs, not clips
                cells.append(f"{100 * r['rate']:.0f}%")
            else:
                cells.append(f"{100 * r['rate']:.0f}% ({r['hits']}/{r['n']})")
        lines.append(f"{description:<34}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def all_pairs_rate(
    estimates: list[dict], rows: list[dict], stated: list[dict], metric: str
) -> dict:
    """Chance rate over every (clip i, row j != i) pair: what the derangement estimates, less noisy.

    ``hits`` and ``n`` count pairs here, not clips.
    """
    pairs = [
        (est, rows[j], stated[j])
        for i, est in enumerate(estimates)
        for j in range(len(rows))
        if j != i
    ]
    return rate(pairs, metric)


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
    args = p.parse_args(argv)
    if args.codec_only and args.save_audio:
        p.error("--save-audio keeps generated clips, and --codec-only generates none: drop one")
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
    stated = [
        {
            "tempo": states_tempo(r["text"], r["bpm"]),
            "key": states_key(r["text"], r["tonic"], r["mode"]),
        }
        for r in rows
    ]
    log(f"loading {args.model} on {device}")
    pipe = Jen1Pipeline.from_pretrained(args.model, device=device)
    diffusion = pipe.config.diffusion
    steps = args.steps or diffusion.num_inference_steps
    cfg = diffusion.guidance_scale if args.cfg is None else args.cfg

    t_gen = time.perf_counter()
    clips: list[np.ndarray] = []
    if not args.codec_only:
        log(f"generating {len(rows)} clips of {args.seconds:g} s ({steps} steps, cfg {cfg:g})")
        clips = generate_clips(pipe, rows, args)
    gen_s = time.perf_counter() - t_gen

    log("estimating tempo and key of the generated, the real and the autoencoded clips")
    t_an = time.perf_counter()
    estimates, real, autoencoded = [], [], []
    for i, row in enumerate(rows):
        if clips:
            estimates.append(analyse(clips[i], pipe.sample_rate))
        real.append(analyse(*real_audio(args.heldout, row, args.seconds)))
        via = autoencoded_audio(pipe, args.heldout, row, args.seconds)
        autoencoded.append(analyse(via, pipe.sample_rate))
        if (i + 1) % 10 == 0 or i + 1 == len(rows):
            log(f"  analysed {i + 1}/{len(rows)}")
    analysis_s = time.perf_counter() - t_an

    perm = derangement(len(rows), args.shuffle_seed)
    n = len(estimates)  # 0 with --codec-only: the generated clips' columns stay empty (n/a)
    totals = {
        "matched": {
            m: rate(list(zip(estimates, rows[:n], stated[:n], strict=True)), m) for m in METRICS
        },
        "shuffled": {
            m: rate([(e, rows[j], stated[j]) for e, j in zip(estimates, perm[:n], strict=True)], m)
            for m in METRICS
        },
        "all_pairs": {m: all_pairs_rate(estimates, rows, stated, m) for m in METRICS},
        "via_autoencoder": {
            m: rate(list(zip(autoencoded, rows, stated, strict=True)), m) for m in METRICS
        },
        "ceiling": {m: rate(list(zip(real, rows, stated, strict=True)), m) for m in METRICS},
    }
    clips_report = []
    for i, row in enumerate(rows):
        clip = {
            "id": row_id(row),
            "prompt": row["text"],
            "genre": row.get("genre"),
            "labels": {"bpm": row["bpm"], "key": f"{row['tonic']} {row['mode']}"},
            "prompt_states": stated[i],
            "real_estimate": {"tempo": round(real[i]["tempo"], 1), "key": real[i]["key"]},
            "real": compare(real[i], row),
            "via_autoencoder_estimate": {
                "tempo": round(autoencoded[i]["tempo"], 1),
                "key": autoencoded[i]["key"],
            },
            "via_autoencoder": compare(autoencoded[i], row),
        }
        if estimates:
            other = rows[perm[i]]
            clip |= {
                "estimate": {"tempo": round(estimates[i]["tempo"], 1), "key": estimates[i]["key"]},
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
        "metrics": {m: d for m, (d, _) in METRICS.items()},
        "totals": totals,
        "wall_s": round(wall, 1),
        "analysis_s": round(analysis_s, 1),
        "clips": clips_report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    n_tempo, n_key = sum(s["tempo"] for s in stated), sum(s["key"] for s in stated)
    how = "nothing generated" if args.codec_only else f"{steps} steps, cfg {cfg:g}"
    print(
        f"{len(rows)} prompts ({n_tempo} state a tempo, {n_key} a key), {args.seconds:g} s, "
        f"{how}, model {report['model']}"
    )
    print(table(totals))
    if not args.codec_only:
        print(
            f"shuffled: each clip vs the labels of another prompt (derangement, seed "
            f"{args.shuffle_seed}); all pairs: the same over every other prompt. "
            f"{gen_s / len(rows):.1f} s/clip to generate."
        )
    print(f"{wall:.0f} s in all. Report: {args.out}")


if __name__ == "__main__":
    main()
