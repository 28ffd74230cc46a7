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

import torch

from jen1cli.audio import load_audio
from jen1cli.model import Jen1Model
from jen1cli.training.data import AudioTextDataset, save_latent_item

MAX_SECONDS = 300  # as the trainer's cache: longer files are cut


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
    cache.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for i, entry in enumerate(dataset.entries, 1):
            audio, _ = load_audio(entry.path, config.sample_rate, channels)
            audio = audio[:, : MAX_SECONDS * config.sample_rate]
            latents = model.whitener(model.autoencoder.encode(audio[None]))[0]
            save_latent_item(cache / f"{entry.path.stem}.safetensors", latents, entry.text)
            if i % 100 == 0 or i == len(dataset.entries):
                print(f"{i}/{len(dataset.entries)} files cached in {cache}", file=sys.stderr)


if __name__ == "__main__":
    main()
