"""Stage 2 of `jen1 train`: fit the latent whitening (Algorithm 1) on the training audio.

No optimizer and no checkpoint: one pass over the data accumulates the latents' mean and
covariance, then the whitener keeps its ``keep_dim`` main directions. With ``--latent-cache``
every file is then encoded whole once, so the diffusion stage can skip the codec.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from jen1cli.training.data import AudioTextDataset, save_latent_item
from jen1cli.training.loop import (
    StopFlag,
    TrainHooks,
    TrainingInterrupted,
    TrainOptions,
    collate,
    export,
    load_run_model,
    report_dataset,
)


@torch.no_grad()
def fit_whitening(
    options: TrainOptions, accelerator: Accelerator, hooks: TrainHooks, flag: StopFlag
) -> None:
    """Refit the run model's whitening (fresh statistics), optionally cache latents, export."""
    model = load_run_model(options, with_text=False)
    config = model.config
    seconds = options.seconds or config.window_seconds
    dataset = AudioTextDataset(
        options.data_dir,
        seconds,
        config.sample_rate,
        config.autoencoder.audio_channels,
        options.seed,
    )
    report_dataset(dataset, hooks)
    autoencoder = model.autoencoder.eval().to(accelerator.device)
    whitener = type(model.whitener)(config.whitener).to(accelerator.device)  # fresh statistics
    loader = accelerator.prepare(
        DataLoader(
            dataset,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
            collate_fn=collate,
        )
    )
    total = len(loader)
    for i, batch in enumerate(loader):
        latents = accelerator.gather(autoencoder.encode(batch["audio"]))  # every process's frames
        whitener.update(latents)
        hooks.progress("whitening", i + 1, total)
        if flag.stop:
            raise TrainingInterrupted(
                "interrupted while fitting the whitening; it restarts from scratch"
            )
    whitener.fit()
    model.whitener = whitener.cpu()
    hooks.log(
        f"whitening: fitted on {int(whitener.count)} latent frames, "
        f"keeping {config.whitener.keep_dim} dims"
    )
    if options.latent_cache:
        _write_latent_cache(options, model, dataset, accelerator, hooks)
    export(accelerator, model, options, "whitening")


class _WholeFiles(torch.utils.data.Dataset):
    """Each entry's audio whole (up to 5 minutes), so loader workers read while the GPU encodes."""

    def __init__(self, entries, sample_rate: int, channels: int) -> None:
        self.entries, self.sample_rate, self.channels = entries, sample_rate, channels

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        from jen1cli.audio import load_audio

        entry = self.entries[index]
        audio, _ = load_audio(entry.path, self.sample_rate, self.channels)
        return audio[:, : 300 * self.sample_rate], entry


def _as_is(item):
    return item


def _write_latent_cache(options, model, dataset, accelerator, hooks) -> None:
    """The stage's cache: each process encodes its share of the files."""
    write_latent_cache(
        model,
        dataset.entries[accelerator.process_index :: accelerator.num_processes],
        options.output / "latents",
        accelerator.device,
        options.num_workers,
        lambda done, total: hooks.progress("latent cache", done, total),
    )
    accelerator.wait_for_everyone()


def write_latent_cache(model, entries, cache: Path, device="cpu", num_workers=0, progress=None):
    """Encode every entry's file whole once, with ``model``'s codec and whitening as they are,
    into ``cache``; diffusion training then skips the codec. Also for continuing a model whose
    run folder is gone (examples/cache_latents.py), where refitting the whitening would move the
    latent space under its trained U-Net."""
    cache.mkdir(parents=True, exist_ok=True)
    autoencoder = model.autoencoder.to(device)
    whitener = model.whitener.to(device)
    files = _WholeFiles(entries, model.config.sample_rate, model.config.autoencoder.audio_channels)
    loader = DataLoader(files, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    with torch.inference_mode():
        for i, (audio, entry) in enumerate(loader):
            latents = whitener(autoencoder.encode(audio[None].to(device)))[0].cpu()
            save_latent_item(cache / f"{entry.path.stem}.safetensors", latents, entry.text)
            if progress is not None:
                progress(i + 1, len(entries))
