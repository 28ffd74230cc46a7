"""Checks that a model folder is whole before its model is built: a readable config.json whose
fields have the right types and sensible values, and weight files whose tensors match it.

Each problem is one :class:`ModelFolderError` line naming the file and what is wrong with it, so a
truncated download or a hand-edited config never surfaces as a traceback or a silent garbage model.
The shapes are compared with the model built on the ``meta`` device (no memory), so a config that
asks for a huge model is refused before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jen1cli.config import Jen1Config


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded as it is: reported in one line, exit code 2."""


_HINT = "download it again (`jen1 download`) or re-export it"
# Fields a model cannot run without a positive value of (0 or less: corrupt or hand-edited).
_POSITIVE = {
    "autoencoder": ("sample_rate", "latent_dim", "n_fft", "latent_scale"),
    "whitener": ("latent_dim", "keep_dim", "eps"),
    "unet": ("latent_channels", "head_dim", "context_dim", "time_embed_dim", "norm_groups"),
    "text_encoder": ("max_length", "hidden_size"),
    "diffusion": ("num_train_timesteps", "num_inference_steps", "beta_start", "beta_end"),
    "": ("window_seconds",),
}


def read_config(folder: Path) -> Jen1Config:
    """``folder/config.json`` as a checked :class:`Jen1Config`."""
    path = folder / "config.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFolderError(f"{path} is not readable JSON ({_short(err)}): {_HINT}") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} holds a {type(data).__name__}, not a JSON object: {_HINT}")
    for name, part in Jen1Config._PARTS.items():
        if not isinstance(data.get(name, {}), dict):
            raise ModelFolderError(f"{path}: '{name}' must be a JSON object: {_HINT}")
        _check_types(part, data.get(name, {}), f"{name}.", path)
    top = {k: v for k, v in data.items() if k not in Jen1Config._PARTS}
    _check_types(Jen1Config, top, "", path)
    try:
        config = Jen1Config.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ModelFolderError(f"{path}: {_short(err)}: {_HINT}") from None
    _check_values(config, path)
    return config


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value can stand for a field annotated ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        if len(value) != len(args):
            return False
        return all(_fits(v, a) for v, a in zip(value, args, strict=True))
    return True  # a type this check does not know: from_dict and the build decide


def _type_name(hint: Any) -> str:
    """``int``, ``a list of int``, ``one of 'a', 'b'``, ``str or null``: a hint in JSON words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return {type(None): "null", float: "a number", str: "a string"}.get(hint, hint.__name__)


def _check_types(cls: type, data: dict, prefix: str, path: Path) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data or f.name in Jen1Config._PARTS:
            continue
        if not _fits(data[f.name], hints[f.name]):
            want = _type_name(hints[f.name])
            raise ModelFolderError(
                f"{path}: {prefix}{f.name} is {json.dumps(data[f.name])[:40]}, "
                f"but must be {want}: {_HINT}"
            )


def _check_values(config: Jen1Config, path: Path) -> None:
    """Refuse values no model runs with: sizes and rates of 0 or less, an unknown sampler."""
    for part, names in _POSITIVE.items():
        holder = getattr(config, part) if part else config
        for name in names:
            if not getattr(holder, name) > 0:
                where = f"{part}.{name}" if part else name
                raise ModelFolderError(f"{path}: {where} must be positive: {_HINT}")
    sizes = [*config.autoencoder.ratios, *config.unet.channels, *config.unet.factors]
    if any(v < 1 for v in sizes) or any(v < 0 for v in config.unet.res_blocks):
        raise ModelFolderError(f"{path}: ratios, channels and factors must be >= 1: {_HINT}")
    if config.autoencoder.audio_channels != 2:
        raise ModelFolderError(
            f"{path}: jen1 runs stereo models, this one has "
            f"{config.autoencoder.audio_channels} channels: {_HINT}"
        )
    if config.window_frames < config.unet.downsample_factor:
        raise ModelFolderError(f"{path}: window_seconds is too short for the U-Net: {_HINT}")
    diffusion = config.diffusion
    if diffusion.num_inference_steps > diffusion.num_train_timesteps:
        raise ModelFolderError(f"{path}: more inference steps than training steps: {_HINT}")
    try:  # the sampler and its schedule are built from these fields
        from jen1cli.diffusion.schedule import make_sampling_scheduler

        make_sampling_scheduler(diffusion).set_timesteps(diffusion.num_inference_steps)
    except Exception as err:  # noqa: BLE001 - diffusers raises many kinds for a bad schedule
        raise ModelFolderError(f"{path}: its diffusion schedule is broken ({_short(err)})") from err


def build_on_meta(config: Jen1Config, cls: type[nn.Module]) -> nn.Module:
    """The model ``config`` describes, with meta tensors (no memory); a config that cannot be
    built is a ModelFolderError."""
    try:
        with torch.device("meta"):
            return cls(config, None)
    except Exception as err:  # noqa: BLE001 - a bad size fails in many ways inside torch
        raise ModelFolderError(f"config.json describes no model ({_short(err)}): {_HINT}") from err


def check_weights(folder: Path, model: nn.Module, files: dict[str, str]) -> None:
    """Every weight file readable, holding exactly the tensors ``model`` (meta) expects, with
    their shapes and kinds of dtype (a float16 export of float32 weights is fine)."""
    from safetensors import SafetensorError, safe_open

    for part, filename in files.items():
        path = folder / filename
        expected = getattr(model, part).state_dict()
        if not path.is_file():
            raise ModelFolderError(f"{path} is missing: {_HINT}")
        try:
            with safe_open(str(path), framework="pt") as f:
                found = {
                    k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                    for k in f.keys()
                }
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise ModelFolderError(
                f"{path} is not a readable safetensors file ({_short(err)}): {_HINT}"
            ) from None
        if missing := sorted(set(expected) - set(found)):
            raise ModelFolderError(f"{path} lacks tensor {missing[0]}: {_HINT}")
        if extra := sorted(set(found) - set(expected)):
            raise ModelFolderError(f"{path} holds {extra[0]}, which config.json has not: {_HINT}")
        for key, tensor in expected.items():
            shape, dtype = found[key]
            if shape != tuple(tensor.shape):
                raise ModelFolderError(
                    f"{path}: {key} is {list(shape)}, config.json makes it {list(tensor.shape)}"
                    f": {_HINT}"
                )
            if _kind(dtype) != _kind(str(tensor.dtype)):
                want = str(tensor.dtype).removeprefix("torch.")
                raise ModelFolderError(f"{path}: {key} is {dtype}, but must be {want}: {_HINT}")


def _kind(dtype: str) -> str:
    """'float', 'bool' or 'int' for a safetensors (F16, BF16, I64...) or torch dtype name."""
    name = dtype.removeprefix("torch.").lower()
    if name.startswith(("f", "bf")):
        return "float"
    return "bool" if name.startswith("bool") else "int"


def check_finite(folder: Path, model: nn.Module, files: dict[str, str]) -> None:
    """Refuse weights holding NaN or infinities (a damaged file whose header still reads)."""
    for part, filename in files.items():
        for key, tensor in getattr(model, part).state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelFolderError(f"{folder / filename}: {key} holds NaN or infinite values")


def load_failure(what: str, err: BaseException) -> ModelFolderError:
    """One line for a part that failed to load after the checks (the text encoder, mostly)."""
    return ModelFolderError(f"cannot load {what} ({type(err).__name__}: {_short(err)}): {_HINT}")
