"""`jen1 download`: a model folder and the text encoder it names, into the Hugging Face cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jen1cli.commands.common import BadInput, default_model

TEXT_ENCODER_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*", "spiece*"]


def download(
    model_id: Annotated[
        str | None, typer.Argument(help="Hugging Face repo id [default: the bundled model].")
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit.")
    ] = None,
) -> None:
    """Download a model and its text encoder so every command then works offline (HF_HUB_OFFLINE=1).

    Example: jen1 download my-org/jen1-large --revision main
    """
    from jen1cli.config import Jen1Config
    from jen1cli.model import CONFIG_NAME, HUB_PATTERNS, ModelNotFoundError

    target = model_id or default_model()
    if Path(target).is_dir():
        folder = Path(target)
        typer.echo(f"jen1: {folder} is a local model folder; fetching only what it names", err=True)
    else:
        folder = _snapshot(target, revision, HUB_PATTERNS)
    if not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(f"'{target}' holds no {CONFIG_NAME}: it is not a jen1 model")
    te = Jen1Config.load(folder / CONFIG_NAME).text_encoder
    if "/" in te.name_or_path and not Path(te.name_or_path).exists():
        _snapshot(te.name_or_path, te.revision, TEXT_ENCODER_PATTERNS)
    typer.echo(str(folder))


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    """snapshot_download with its own progress bars; a clear error when the repo cannot be had."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if repo_id.count("/") != 1:
        raise BadInput(
            f"'{repo_id}' is neither a model folder nor a Hugging Face repo id (owner/name)"
        )
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise BadInput(
            f"could not download '{repo_id}' ({type(err).__name__}): "
            "check the id and your network, "
            "or pass --model with a local model folder"
        ) from err
