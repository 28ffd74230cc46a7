"""Real recorded music from Debian's game-music packages: a track-level train / held-out split.

The codec must keep the notes of real recordings, not only of the synthetic GM set, so it is
trained and judged on music a person played and mixed. Whole tracks are held out (every
``--heldout-every``-th track of each package, in sorted order), so no held-out clip shares a
recording with a training crop.

    apt-get install wesnoth-1.16-music warzone2100-music ufoai-music nexuiz-music \\
        asc-music planetblupi-music-ogg drascula-music
    python examples/real_music.py /work/data/real --crops 12 --seconds 4

writes ``train.npy`` (float16 [clips, 2, N], 48 kHz stereo crops for codec training),
``heldout/*.flac`` (one 10 s clip from the middle of each held-out track... and further clips
spread over it) and ``tracks.json`` (which file went where).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

# Where each Debian package puts its music; the pk3 archives are zip files of .ogg tracks.
SOURCES = {
    "wesnoth": ["/usr/share/games/wesnoth/*/data/core/music/*.ogg"],
    "warzone2100": ["/usr/share/games/warzone2100/music/**/*.opus"],
    "ufoai": ["zip:/usr/share/games/ufoai/base/0music.pk3"],
    "nexuiz": ["zip:/usr/share/games/nexuiz/data/music.pk3"],
    "asc": ["/usr/share/games/asc/music/*.mp3"],
    "planetblupi": ["/usr/share/planetblupi/music/*.ogg"],
    "drascula": ["/usr/share/scummvm/drascula/audio/*.ogg"],
}
MIN_SECONDS = 20.0  # jingles and stingers are not music to learn from


def find_tracks(unpack_dir: Path) -> dict[str, list[Path]]:
    """Every readable track of every installed package, sorted, per package."""
    import soundfile as sf

    out: dict[str, list[Path]] = {}
    for name, patterns in SOURCES.items():
        files: list[Path] = []
        for pattern in patterns:
            if pattern.startswith("zip:"):
                archive = Path(pattern[4:])
                if not archive.exists():
                    continue
                target = unpack_dir / name
                with zipfile.ZipFile(archive) as z:
                    members = [m for m in z.namelist() if m.lower().endswith(".ogg")]
                    z.extractall(target, members)
                files += [target / m for m in members]
            else:
                files += [Path(p) for p in glob.glob(pattern, recursive=True)]
        keep = []
        for f in sorted(set(files)):
            try:
                if sf.info(str(f)).duration >= MIN_SECONDS:
                    keep.append(f)
            except Exception:  # noqa: BLE001 - an unreadable file is skipped, not fatal
                print(f"skipped unreadable {f}", file=sys.stderr)
        if keep:
            out[name] = keep
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--crops", type=int, default=12, help="training crops per training track")
    p.add_argument("--seconds", type=float, default=4.0, help="length of a training crop")
    p.add_argument("--heldout-every", type=int, default=5)
    p.add_argument("--heldout-crops", type=int, default=2, help="10 s clips per held-out track")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import soundfile as sf

    from jen1cli.audio import read_audio_segment

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tracks = find_tracks(args.out / "unpacked")
    split = {"train": [], "heldout": []}
    crops = []
    n = round(args.seconds * 48_000)
    (args.out / "heldout").mkdir(exist_ok=True)
    for name, files in tracks.items():
        for i, f in enumerate(files):
            duration = sf.info(str(f)).duration
            if i % args.heldout_every == args.heldout_every // 2:
                split["heldout"].append(str(f))
                for k in range(args.heldout_crops):
                    start = (k + 0.5) / args.heldout_crops * duration - 5.0
                    start = max(0.0, min(start, duration - 10.0))
                    clip = read_audio_segment(f, start, 10.0, 48_000, 2).numpy()
                    sf.write(args.out / "heldout" / f"{name}-{f.stem}-{k}.flac", clip.T, 48_000)
                continue
            split["train"].append(str(f))
            for start in rng.uniform(0, duration - args.seconds, size=args.crops):
                clip = read_audio_segment(f, float(start), args.seconds, 48_000, 2)
                if clip.shape[-1] == n and float(clip.abs().max()) > 1e-3:
                    crops.append(clip.numpy().astype(np.float16))
            print(f"{name}: {f.name} ({len(crops)} crops so far)", file=sys.stderr, flush=True)
    np.save(args.out / "train.npy", np.stack(crops))
    (args.out / "tracks.json").write_text(json.dumps(split, indent=1))
    print(
        f"{len(crops)} training crops from {len(split['train'])} tracks; "
        f"{len(split['heldout'])} held-out tracks"
    )


if __name__ == "__main__":
    main()
