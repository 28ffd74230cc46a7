"""Build a captioned synthetic music set for `jen1 train` from random multi-instrument MIDI.

Each example is a random composition in one of ten styles (chords, bass on the root, a diatonic
melody, a General MIDI drum pattern on channel 10), rendered by fluidsynth to 48 kHz stereo and
captioned from its known attributes. Output, in the Hugging Face audiofolder layout:

    OUT_DIR/train/train-000000.wav ... + metadata.jsonl   (file_name, text, attribute columns)
    OUT_DIR/heldout/heldout-000000.wav ... + metadata.jsonl
    OUT_DIR/midi/{train,heldout}/*.mid                      (the scores, for inspection)
    OUT_DIR/build.json                                      (the options it was built with)

Usage: python examples/make_dataset.py OUT_DIR --count 2000 --heldout 100 --seconds 10 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf
from synth_music import Style, compose, to_midi

SAMPLE_RATE = 48_000
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TARGET_RMS_DB = -20.0  # mild loudness target; quiet styles stay below it when the peak cap bites
PEAK_CAP = 10 ** (-1.0 / 20)  # -1 dBFS

# --- captions -----------------------------------------------------------------------------------

MOOD_WORDS = {
    "mellow": ("mellow", "soft", "gentle"),
    "sad": ("sad", "melancholic", "sorrowful"),
    "tender": ("tender", "delicate", "intimate"),
    "romantic": ("romantic", "heartfelt"),
    "energetic": ("energetic", "high-energy", "powerful"),
    "aggressive": ("aggressive", "hard-hitting", "fierce"),
    "upbeat": ("upbeat", "lively", "bouncy"),
    "driving": ("driving", "propulsive", "pumping"),
    "calm": ("calm", "tranquil", "serene"),
    "dreamy": ("dreamy", "floating", "hazy"),
    "ethereal": ("ethereal", "airy", "spacious"),
    "peaceful": ("peaceful", "soothing", "meditative"),
    "relaxed": ("relaxed", "easygoing", "laid-back"),
    "smooth": ("smooth", "silky", "suave"),
    "lively": ("lively", "spirited", "swinging"),
    "cool": ("cool", "understated"),
    "hypnotic": ("hypnotic", "trance-like", "repetitive"),
    "euphoric": ("euphoric", "ecstatic", "festival-ready"),
    "epic": ("epic", "grand", "heroic"),
    "dramatic": ("dramatic", "intense", "tense"),
    "majestic": ("majestic", "stately", "noble"),
    "warm": ("warm", "cozy", "homely"),
    "cheerful": ("cheerful", "joyful", "merry"),
    "nostalgic": ("nostalgic", "wistful", "bittersweet"),
    "carefree": ("carefree", "sunny", "lighthearted"),
    "chill": ("chill", "mellow", "low-key"),
    "laid-back": ("laid-back", "lazy", "unhurried"),
    "happy": ("happy", "joyful", "feel-good"),
    "bright": ("bright", "sparkling", "shiny"),
    "uplifting": ("uplifting", "hopeful", "inspiring"),
    "breezy": ("breezy", "light", "sunny"),
}
SPOKEN = {"C#": "C sharp", "Eb": "E flat", "F#": "F sharp", "Ab": "A flat", "Bb": "B flat"}
NOUNS = ("track", "song", "piece", "tune", "ballad", "beat", "soundscape")


def _tempo_word(bpm: int, rng: random.Random) -> str:
    """A speed adjective consistent with the BPM, or "" in the ambiguous middle."""
    if bpm < 80:
        return rng.choice(("slow", "slow-paced", "unhurried"))
    if 90 <= bpm <= 115:
        return rng.choice(("mid-tempo", "moderate-tempo", "medium-paced"))
    if bpm >= 130:
        return rng.choice(("fast", "uptempo", "fast-paced"))
    return ""


def _join(words: list[str]) -> str:
    """Join words as "a", "a and b" or "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def caption(attrs: dict, style: Style, rng: random.Random) -> str:
    """A caption from the attributes: varied wording, order, and which attributes it mentions."""
    tonic = attrs["tonic"]
    if tonic in SPOKEN and rng.random() < 0.3:
        tonic = SPOKEN[tonic]
    key = f"{tonic} {attrs['mode']}" if rng.random() < 0.9 else ""
    bpm = rng.choice(("{} BPM", "{} bpm", "{} beats per minute", "{}bpm")).format(attrs["bpm"])
    bpm = bpm if rng.random() < 0.9 else ""
    mood = rng.choice(MOOD_WORDS[attrs["mood"]]) if rng.random() < 0.8 else ""
    genre = rng.choice(style.names)
    speed = _tempo_word(attrs["bpm"], rng) if rng.random() < 0.4 else ""
    insts = [i for i in attrs["instruments"] if rng.random() < 0.6] if rng.random() < 0.8 else []
    drumless = (
        rng.choice(("no drums", "without drums", "no percussion"))
        if not attrs["drums"] and rng.random() < 0.3
        else ""
    )

    form = rng.randrange(4)
    if form == 3:  # a tag list in random order
        tags = [
            genre,
            mood,
            speed,
            key and rng.choice((key, f"key of {key}", f"{key} key")),
            bpm,
            *insts,
            drumless,
        ]
        tags = [t for t in tags if t]
        rng.shuffle(tags)
        text = ", ".join(tags)
    else:
        head = " ".join(w for w in (speed, mood, genre) if w)
        if genre.split()[-1] in NOUNS and rng.random() < 0.7:
            head = ("an " if head[0] in "aeiou" else "a ") + head
        with_ = rng.choice(("with", "featuring")) + " " + _join(insts) if insts else ""
        with_ = ", ".join(p for p in (with_, drumless) if p)
        body = head + (" " if insts else ", ") + with_ if with_ else head  # "…, no drums"
        in_key = rng.choice(("in {}", "in the key of {}")).format(key) if key else ""
        at_bpm = rng.choice(("at {}", "at a tempo of {}")).format(bpm) if bpm else ""
        if form == 0:  # "a mellow piano ballad in D minor at 72 BPM, with ..."
            parts = [head, in_key, at_bpm]
            text = " ".join(p for p in parts if p) + (", " + with_ if with_ else "")
        elif form == 1:  # "fast energetic rock with distorted guitar and drums, 150 bpm, E minor"
            text = ", ".join(p for p in (body, bpm, key) if p)
        else:  # "Key: D minor. Tempo: 72 BPM. A mellow piano ballad with ..."
            labelled = [f"Key: {key}." if key else "", f"Tempo: {bpm}." if bpm else ""]
            rng.shuffle(labelled)
            sentence = body + "."
            parts = [sentence[0].upper() + sentence[1:], *labelled]
            text = " ".join(p for p in (parts if rng.random() < 0.5 else parts[::-1]) if p)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return text


# --- rendering and the build --------------------------------------------------------------------


def example_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed per example, from disjoint streams for train and held-out.

    So growing --count never moves a composition from one split into the other.
    """
    digest = hashlib.sha256(f"jen1-synth/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def render(mid_path: Path, wav_path: Path, seconds: float, soundfont: str, work: Path) -> None:
    """fluidsynth → float WAV → crop to `seconds`, loudness-normalise, peak-cap, 16-bit WAV."""
    # scratch files live in `work`, outside the split folder, so it only ever holds finished clips
    raw = work / f"{wav_path.stem}.raw.wav"
    # chorus off: fluidsynth's chorus renders FluidR3's synth and pad presets in anti-phase
    # (L/R correlation down to -0.9), which would cancel in any mono mix-down
    cmd = ["fluidsynth", "-ni", "-q", "-C", "0", "-O", "float", "-T", "wav", "-r", str(SAMPLE_RATE),
           "-g", "0.5", "-F", str(raw), soundfont, str(mid_path)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    audio, sr = sf.read(raw, dtype="float64", always_2d=True)  # [T, C]
    raw.unlink()
    if sr != SAMPLE_RATE or audio.shape[1] != 2:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, {audio.shape[1]} channels")
    n = round(seconds * SAMPLE_RATE)
    audio = np.pad(audio[:n], ((0, max(0, n - len(audio))), (0, 0)))
    rms = math.sqrt(float(np.mean(audio**2))) + 1e-9
    peak = float(np.max(np.abs(audio))) + 1e-9
    audio *= min(10 ** (TARGET_RMS_DB / 20) / rms, PEAK_CAP / peak)
    fade = round(0.02 * SAMPLE_RATE)  # the clip cuts mid-note: a short fade avoids a click
    audio[-fade:] *= np.linspace(1, 0, fade)[:, None]
    tmp = work / f"{wav_path.stem}.wav"
    sf.write(tmp, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, wav_path)  # atomic: a file that exists is complete


def build_one(
    out: Path, split: str, index: int, seed: int, seconds: float, soundfont: str
) -> tuple[dict, float]:
    """Compose, write MIDI and render unless the audio exists; returns (metadata row, render s)."""
    eid = f"{split}-{index:06d}"
    ex_seed = example_seed(seed, split, index)
    song = compose(ex_seed, seconds)
    row = {
        "file_name": f"{eid}.wav",
        "text": caption(song.attrs, song.style, random.Random(f"{ex_seed}/caption")),
    }
    row.update(id=eid, split=split, **song.attrs, seconds=seconds)
    wav = out / split / row["file_name"]
    if wav.exists():
        return row, 0.0
    mid = out / "midi" / split / f"{eid}.mid"
    to_midi(song).save(mid)
    t0 = time.perf_counter()
    render(mid, wav, seconds, soundfont, out / ".partial")
    return row, time.perf_counter() - t0


def write_metadata(path: Path, rows: list[dict]) -> None:
    """metadata.jsonl sorted by id, written atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["id"])))
    os.replace(tmp, path)


def _take_lock(out: Path) -> Path:
    """Refuse to build into a folder that another live build is writing."""
    lock = out / ".lock"
    if lock.exists():
        pid = int(lock.read_text().strip() or 0)
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except (ProcessLookupError, ValueError):
            pass  # a stale lock from an interrupted build
        else:
            sys.exit(f"another build (pid {pid}) is writing {out}")
    lock.write_text(str(os.getpid()))
    return lock


def _build_split(out: Path, split: str, total: int, seed: int, seconds: float, workers: int,
                 soundfont: str) -> None:  # fmt: skip
    """Render one split in a process pool, printing progress and writing its metadata."""
    rows, rendered, render_s, t0 = [], 0, 0.0, time.perf_counter()
    every = max(1, total // 40)
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = [
            pool.submit(build_one, out, split, i, seed, seconds, soundfont) for i in range(total)
        ]
        for fut in as_completed(futures):
            row, secs = fut.result()
            rows.append(row)
            rendered += secs > 0
            render_s += secs
            done = len(rows)
            if done % every == 0 or done == total:
                elapsed = time.perf_counter() - t0
                per = f"{render_s / rendered:.2f} s/clip render" if rendered else "all existing"
                print(
                    f"[{split}] {done}/{total} ({done - rendered} existing) | {per} | "
                    f"{elapsed:.0f} s elapsed, eta {elapsed / done * (total - done):.0f} s",
                    flush=True,
                )
            if done % 200 == 0:  # partial metadata, so a long build is usable early
                write_metadata(out / split / "metadata.jsonl", rows)
    finally:
        # on Ctrl-C or an error: drop queued clips instead of rendering them all before exiting
        pool.shutdown(wait=True, cancel_futures=True)
        write_metadata(out / split / "metadata.jsonl", rows)


def build(out: Path, count: int, heldout: int, seconds: float, seed: int, workers: int,
          soundfont: str) -> None:  # fmt: skip
    """Build both splits; resumes an interrupted build by skipping audio that exists."""
    options = {"seed": seed, "seconds": seconds, "sample_rate": SAMPLE_RATE,
               "soundfont": Path(soundfont).name}  # fmt: skip
    record = out / "build.json"
    if record.exists():
        old = json.loads(record.read_text())
        if {k: old.get(k) for k in options} != options:
            sys.exit(f"{out} was built with {old}; use a new folder for different options")
    out.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(out)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # scratch files of an interrupted build
    for sub in (".partial", "train", "heldout", "midi/train", "midi/heldout"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({**options, "count": count, "heldout": heldout}, indent=1) + "\n")
    try:
        # held-out first: it is small, and an evaluation can start while train is still rendering
        for split, total in (("heldout", heldout), ("train", count)):
            _build_split(out, split, total, seed, seconds, workers, soundfont)
    except KeyboardInterrupt:
        sys.exit("interrupted: run the same command again to resume")
    finally:
        lock.unlink()
    (out / ".partial").rmdir()
    print(f"done: {count} train + {heldout} held-out clips in {out}", flush=True)


def main() -> None:
    """Parse the command line and build the set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=2000, help="training clips")
    parser.add_argument("--heldout", type=int, default=100, help="held-out clips (never in train)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="parallel renders")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT)
    args = parser.parse_args()
    if shutil.which("fluidsynth") is None or not Path(args.soundfont).exists():
        sys.exit(
            "needs fluidsynth and a GM soundfont: apt-get install fluidsynth fluid-soundfont-gm"
        )
    build(
        args.out_dir,
        args.count,
        args.heldout,
        args.seconds,
        args.seed,
        args.workers,
        args.soundfont,
    )


if __name__ == "__main__":
    main()
