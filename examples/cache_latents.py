"""Continue a model's diffusion training in a new run folder: its latent cache, from its own codec
and whitening.

`jen1 train --stage whitening --latent-cache` refits the whitening before it caches, which
changes the latent space a trained U-Net was fitted in. When the run folder of a model is gone and
its weights are what lasts, this writes the cache with the model's whitening as it is; then

    python examples/cache_latents.py models/jen1-demo DATA/synth/train RUN
    jen1 train DATA/synth/train --output RUN --config models/jen1-demo/config.json \
        --init-from models/jen1-demo --stage diffusion --latent-cache ...

continues the model where it stopped (with a fresh optimiser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jen1cli.model import Jen1Model
from jen1cli.training.data import AudioTextDataset
from jen1cli.training.whitening import write_latent_cache


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder whose codec and whitening encode the data")
    parser.add_argument("data", type=Path, help="captioned audio folder (metadata.jsonl)")
    parser.add_argument("run", type=Path, help="run folder; the cache goes to RUN/latents")
    args = parser.parse_args(argv)

    model = Jen1Model.from_pretrained(args.model, load_text_encoder=False).eval()
    if not model.whitener.fitted:
        sys.exit(f"{args.model} has no whitening statistics: train its whitening stage first")
    config = model.config
    channels = config.autoencoder.audio_channels
    dataset = AudioTextDataset(args.data, config.window_seconds, config.sample_rate, channels, 0)
    cache = args.run / "latents"

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"{done}/{total} files cached in {cache}", file=sys.stderr)

    write_latent_cache(model, dataset.entries, cache, progress=progress)


if __name__ == "__main__":
    main()
