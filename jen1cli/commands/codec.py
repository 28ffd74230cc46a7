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
# safetensors dtypes that NumPy cannot hold (read through torch, widened to float32).
_TORCH_ONLY_DTYPES = {"BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0"}


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
    from jen1cli.audio_header import audio_info  # the header alone: no torch yet

    check_file_duration(audio_info(input).duration_s)
    output = check_output(output or input.with_name(f"{input.stem}.latent.safetensors"), overwrite)
    device = resolve_device(device)

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from jen1cli.audio import atomic_write, load_audio

    pipe = load_pipeline(model, device)
    audio, info = load_audio(input, sample_rate=pipe.sample_rate, channels=2)
    with progress_bars(quiet) as callback:
        latents = pipe.encode(audio[None], callback)[0].cpu().contiguous()
    if not bool(latents.isfinite().all()):
        raise BadInput(
            f"the model encoded {input} into NaN or infinite latents: its weights are broken"
        )
    metadata = {
        "model": pipe.model.source,
        "latent_space": latent_space_id(pipe),
        "sample_rate": str(pipe.sample_rate),
        "hop_length": str(pipe.hop_length),
        "length": str(audio.shape[-1]),
        "latent_channels": str(latents.shape[0]),
        "source": str(input),
        "jen1_version": __version__,
    }

    def write(tmp: Path) -> None:
        try:
            save_file({LATENT_KEY: latents}, str(tmp), metadata=metadata)
        except SafetensorError as err:  # an I/O error inside the Rust writer
            raise BadInput(f"cannot write {output} ({err}) — check space and permissions") from err

    atomic_write(output, write, overwrite)
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
    latents, meta = read_latents(input, as_numpy=True)  # checked without torch
    length = int(meta["length"])
    stem = input.name.removesuffix(".safetensors").removesuffix(".latent")
    output = check_output(output or input.with_name(f"{stem}.wav"), overwrite)
    device = resolve_device(device)

    import torch

    from jen1cli.audio import save_audio

    latents = torch.from_numpy(latents)
    pipe = load_pipeline(model, device)
    space = meta.get("latent_space")
    if space is not None and space != latent_space_id(pipe):
        raise BadInput(
            f"{input} was encoded by model '{meta.get('model')}' (latent space {space[:16]}), "
            f"not by {pipe.model.source} ({latent_space_id(pipe)}): decode it with that --model"
        )
    if (
        int(meta["latent_channels"]) != pipe.config.unet.latent_channels
        or int(meta["hop_length"]) != pipe.hop_length
        or int(meta.get("sample_rate", pipe.sample_rate)) != pipe.sample_rate
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


def read_latents(path: Path, as_numpy: bool = False):
    """Read a latent file, refusing anything that is not one of ours with a clear message.

    The latents come back as a torch tensor, or with ``as_numpy`` as a NumPy array: then a file
    of float16/32/64 latents (what `jen1 encode` writes) is read and checked without torch.
    """
    import numpy as np
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise BadInput(f"{path} does not exist: give a file written by `jen1 encode`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if LATENT_KEY not in f.keys():
                raise BadInput(
                    f"{path} holds no '{LATENT_KEY}' tensor: give a file written by `jen1 encode`"
                )
            torch_only = f.get_slice(LATENT_KEY).get_dtype() in _TORCH_ONLY_DTYPES
            latents = None if torch_only else f.get_tensor(LATENT_KEY)
        if latents is None:  # bfloat16 or float8, which NumPy lacks; float32 holds them exactly
            with safe_open(str(path), framework="pt") as f:
                latents = f.get_tensor(LATENT_KEY).float().numpy()
    except SafetensorError as err:
        raise BadInput(  # noqa: B904 - the cause is in the message
            f"{path} is not a safetensors latent file ({err}): give a file written by `jen1 encode`"
        )
    missing = {"length", "hop_length", "latent_channels"} - set(meta)
    if missing or latents.ndim != 2:
        raise BadInput(f"{path} lacks jen1 latent metadata: give a file written by `jen1 encode`")
    if not np.issubdtype(latents.dtype, np.floating):
        kind = latents.dtype  # int64, bool...: the names torch gives them too
        raise BadInput(f"{path} holds {kind} latents: give a file written by `jen1 encode`")
    if not bool(np.isfinite(latents).all()):
        raise BadInput(f"{path} holds NaN or infinite latents: give a file `jen1 encode` wrote")
    try:
        length, hop = int(meta["length"]), int(meta["hop_length"])
        channels, _ = int(meta["latent_channels"]), int(meta.get("sample_rate", "1"))
    except ValueError:
        raise BadInput(
            f"{path} has broken jen1 latent metadata: give a file written by `jen1 encode`"
        ) from None
    if hop < 1 or length < 1 or -(-length // hop) != latents.shape[-1]:
        raise BadInput(
            f"{path}: its {latents.shape[-1]} latent frames do not make {length} samples at "
            f"hop {hop}: give a file written by `jen1 encode`"
        )
    if channels != latents.shape[0]:
        raise BadInput(
            f"{path} holds {latents.shape[0]} latent channels, its metadata says {channels}: "
            "give a file written by `jen1 encode`"
        )
    if as_numpy:
        return latents, meta
    import torch

    return torch.from_numpy(latents), meta


def latent_space_id(pipe) -> str:
    """A fingerprint of the model's latent space: a hash of its whitening statistics, which are
    fitted on its own encoder's output (so another model's latents never match it)."""
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in sorted(pipe.model.whitener.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
