"""The paper's Table 2 protocol on MusicCaps: generate from every caption, then `jen1 eval`.

MusicCaps (Agostinelli et al. 2023) publishes captions of 10 s YouTube segments as a CSV
(`musiccaps-public.csv`: ytid, start_s, end_s, caption, ...); the audio itself must be fetched
from YouTube by you, cut to [start_s, end_s] and saved as REFERENCE_DIR/<ytid>.wav (any format
`soundfile` reads). This script does the rest:

    python examples/musiccaps.py musiccaps-public.csv --reference-dir musiccaps-audio \\
        --out runs/musiccaps --model models/jen1-746m-trained --device cuda --batch 16

It writes OUT/generated/<ytid>.wav (same names as the references, so the KL pairs them),
OUT/prompts.jsonl, and OUT/eval.json from `jen1 eval` (FAD with CLAP embeddings by default, KL
of AudioSet labels, CLAP score). Generation resumes: clips that exist are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def read_captions(csv_path: Path, limit: int | None, only_eval: bool) -> list[dict]:
    """Rows with ytid and caption (optionally only the AudioSet eval split, as some papers do)."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"ytid", "caption"} - set(rows[0] if rows else {})
    if missing:
        sys.exit(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}: is it MusicCaps?")
    if only_eval:
        rows = [r for r in rows if r.get("is_audioset_eval", "").lower() == "true"]
    return rows[:limit] if limit else rows


def generate(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    """Generate every missing clip in batches with the pipeline `jen1 generate` uses."""
    import torch

    from jen1cli.audio import master, save_audio
    from jen1cli.commands.common import default_model, resolve_device
    from jen1cli.pipeline import Jen1Pipeline, SamplingOptions

    todo = [r for r in rows if not (out / f"{r['ytid']}.wav").exists()]
    if not todo:
        return
    pipe = Jen1Pipeline.from_pretrained(args.model or default_model(), resolve_device(args.device))
    for start in range(0, len(todo), args.batch):
        batch = todo[start : start + args.batch]
        options = SamplingOptions(steps=args.steps, guidance_scale=args.cfg, seed=args.seed + start)
        with torch.inference_mode():
            audio = pipe.generate([r["caption"] for r in batch], args.seconds, options).cpu()
        for row, clip in zip(batch, audio, strict=True):
            clip = master(clip, pipe.sample_rate)
            save_audio(out / f"{row['ytid']}.wav", clip, pipe.sample_rate, overwrite=True)
        print(f"generated {min(start + args.batch, len(todo))}/{len(todo)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("captions_csv", type=Path, help="musiccaps-public.csv")
    p.add_argument("--reference-dir", type=Path, required=True, help="<ytid>.wav MusicCaps clips")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", help="model folder or Hub repo id [default: the bundled model]")
    p.add_argument("--limit", type=int, help="first N captions only")
    p.add_argument("--audioset-eval-only", action="store_true", help="the 2.8 k eval-split rows")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--embedding", default="clap", help="FAD embedding: clap or encodec")
    args = p.parse_args()

    rows = read_captions(args.captions_csv, args.limit, args.audioset_eval_only)
    have = {f.stem for f in args.reference_dir.iterdir()} if args.reference_dir.is_dir() else set()
    rows = [r for r in rows if r["ytid"] in have]
    if not rows:
        sys.exit(f"none of the captions has its clip in {args.reference_dir} (<ytid>.wav)")
    generated = args.out / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    prompts = args.out / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"file_name": f"{r['ytid']}.wav", "text": r["caption"]}) + "\n" for r in rows
        )  # fmt: skip
    )
    print(f"{len(rows)} captions with reference audio", flush=True)
    generate(rows, generated, args)
    # the references of the evaluated captions only, so FAD compares like with like
    reference = args.out / "reference"
    reference.mkdir(exist_ok=True)
    for r in rows:
        source = next(args.reference_dir.glob(f"{r['ytid']}.*"))
        link = reference / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    cmd = ["jen1", "eval", str(generated), str(reference), "--prompts", str(prompts),
           "--embedding", args.embedding, "--device", args.device,
           "-o", str(args.out / "eval.json"), "--overwrite"]  # fmt: skip
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
