"""`jen1 encode` / `jen1 decode`: audio <-> whitened latents in a safetensors file with metadata.

Files of any length up to `MAX_FILE_SECONDS`: the pipeline runs the autoencoder chunk by chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jen1cli import __version__
from jen1cli.commands.common import (
    MAX_FILE_SECONDS,
    BadInput,
    DeviceOpt,
    ModelOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    check_file_duration,
    check_output,
    load_pipeline,
    progress_bars,
    resolve_device,
)

LATENT_KEY = "latents"


def encode(
    input: Annotated[Path, typer.Argument(help="Audio file to encode.")],
    output: OutputOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode audio into the model's whitened latents.

    Example: jen1 encode song.wav -o song.latent.safetensors
    """
    from safetensors.torch import save_file

    from jen1cli.audio import atomic_write, audio_info, load_audio

    check_file_duration(audio_info(input).duration_s)
    output = check_output(output or input.with_name(f"{input.stem}.latent.safetensors"), overwrite)
    pipe = load_pipeline(model, resolve_device(device))
    audio, info = load_audio(input, sample_rate=pipe.sample_rate, channels=2)
    with progress_bars(quiet) as callback:
        latents = pipe.encode(audio[None], callback)[0].cpu().contiguous()
    metadata = {
        "model": pipe.model.source,
        "sample_rate": str(pipe.sample_rate),
        "hop_length": str(pipe.hop_length),
        "length": str(audio.shape[-1]),
        "latent_channels": str(latents.shape[0]),
        "source": str(input),
        "jen1_version": __version__,
    }
    atomic_write(
        output, lambda tmp: save_file({LATENT_KEY: latents}, str(tmp), metadata=metadata), overwrite
    )
    typer.echo(str(output))


def decode(
    input: Annotated[Path, typer.Argument(help="Latent file written by `jen1 encode`.")],
    output: OutputOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode whitened latents back into 48 kHz stereo audio of the original duration.

    Example: jen1 decode song.latent.safetensors -o song.wav
    """
    from jen1cli.audio import save_audio

    latents, meta = read_latents(input)
    length = int(meta["length"])
    stem = input.name.removesuffix(".safetensors").removesuffix(".latent")
    output = check_output(output or input.with_name(f"{stem}.wav"), overwrite)
    pipe = load_pipeline(model, resolve_device(device))
    if (
        int(meta["latent_channels"]) != pipe.config.unet.latent_channels
        or int(meta["hop_length"]) != pipe.hop_length
    ):
        raise BadInput(
            f"{input} was encoded by model '{meta.get('model')}' with other latent settings: "
            "decode it with that model (--model)"
        )
    if length > MAX_FILE_SECONDS * pipe.sample_rate:
        raise BadInput(
            f"{input} holds {length / pipe.sample_rate:g} s of audio; jen1 decodes at most "
            f"{MAX_FILE_SECONDS:g} s"
        )
    with progress_bars(quiet) as callback:
        audio = pipe.decode(latents[None], length, callback)[0].cpu()
    save_audio(output, audio, pipe.sample_rate, overwrite=overwrite)
    typer.echo(str(output))


def read_latents(path: Path):
    """Read a latent file, refusing anything that is not one of ours with a clear message."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise BadInput(f"{path} does not exist: give a file written by `jen1 encode`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if LATENT_KEY not in f.keys():
                raise BadInput(
                    f"{path} holds no '{LATENT_KEY}' tensor: give a file written by `jen1 encode`"
                )
            latents = f.get_tensor(LATENT_KEY)
    except SafetensorError as err:
        raise BadInput(  # noqa: B904 - the cause is in the message
            f"{path} is not a safetensors latent file ({err}): give a file written by `jen1 encode`"
        )
    missing = {"length", "hop_length", "latent_channels"} - set(meta)
    if missing or latents.ndim != 2:
        raise BadInput(f"{path} lacks jen1 latent metadata: give a file written by `jen1 encode`")
    try:
        length, hop = int(meta["length"]), int(meta["hop_length"])
        int(meta["latent_channels"])
    except ValueError:
        raise BadInput(
            f"{path} has broken jen1 latent metadata: give a file written by `jen1 encode`"
        ) from None
    if hop < 1 or length < 1 or -(-length // hop) != latents.shape[-1]:
        raise BadInput(
            f"{path}: its {latents.shape[-1]} latent frames do not make {length} samples at "
            f"hop {hop}: give a file written by `jen1 encode`"
        )
    return latents, meta
