"""Broken model folders and latent files for the fuzz harness.

A model case copies a good tiny model folder and breaks one thing: a file missing or truncated, a
tensor of the wrong shape or dtype, NaN weights, a bad ``config.json``. A latent case takes a good
``jen1 encode`` file and changes its tensor, its bytes or its metadata.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

WEIGHT_FILES = ["autoencoder.safetensors", "whitener.safetensors", "unet.safetensors"]
ALL_FILES = ["config.json", *WEIGHT_FILES, "text_encoder", "text_encoder/config.json"]
ALL_FILES += ["text_encoder/model.safetensors", "text_encoder/tokenizer_config.json"]
DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.bool]
ODD_VALUES = [0, -1, 1, 2, 3, 10**9, 1e308, 0.5, -0.0, True, None, "x", [], {}, [1, 2]]


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _reshaped(t: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """``t`` with one more or one fewer entry along a dimension, or flattened / transposed."""
    kind = rng.choice(["grow", "shrink", "flat", "transpose", "scalar", "extra_dim"])
    if kind == "flat" or t.dim() == 0:
        return t.reshape(-1)
    if kind == "transpose" and t.dim() >= 2:
        return t.transpose(0, -1).contiguous()
    if kind == "scalar":
        return t.reshape(-1)[:1].reshape(())
    if kind == "extra_dim":
        return t[None]
    dim = rng.randrange(t.dim())
    if kind == "shrink" and t.shape[dim] > 1:
        return t.narrow(dim, 0, t.shape[dim] - 1).contiguous()
    pad = list(t.shape)
    pad[dim] = 1
    return torch.cat([t, torch.zeros(pad, dtype=t.dtype)], dim=dim)


def change_tensors(path: Path, rng: random.Random) -> str:
    """Rewrite one safetensors file with one tensor changed (shape, dtype, values, name)."""
    tensors, meta = read_tensors(path)
    name = rng.choice(sorted(tensors))
    kind = rng.choice(["shape", "dtype", "nan", "inf", "missing", "extra", "renamed", "huge"])
    t = tensors[name]
    if kind == "shape":
        tensors[name] = _reshaped(t, rng)
    elif kind == "dtype":
        tensors[name] = t.to(rng.choice(DTYPES))
    elif kind in ("nan", "inf", "huge") and t.is_floating_point() and t.numel():
        value = {"nan": float("nan"), "inf": float("inf"), "huge": 1e30}[kind]
        t = t.clone()
        t.view(-1)[rng.randrange(t.numel())] = value
        tensors[name] = t
    elif kind == "missing":
        del tensors[name]
    elif kind == "extra":
        tensors["stray.weight"] = torch.zeros(3)
    else:
        tensors[f"{name}.renamed"] = tensors.pop(name)
    save_file(tensors, str(path), metadata=meta)
    return f"{path.name}: {kind} {name}"


def _config_fields(config: dict) -> list[tuple[str | None, str]]:
    out = [(None, k) for k, v in config.items() if not isinstance(v, dict)]
    for part, sub in config.items():
        if isinstance(sub, dict):
            out += [(part, k) for k in sub]
    return out


def change_config(path: Path, rng: random.Random) -> str:
    """Break config.json: syntax, structure, a field's type or value, the text encoder path."""
    text = path.read_text()
    kind = rng.choice(["syntax", "syntax", "structure", "field", "field", "field", "text_encoder"])
    if kind == "syntax":
        how = rng.choice(["truncated", "empty", "junk", "utf16", "nan"])
        data = {
            "truncated": text[: rng.randrange(len(text))].encode(),
            "empty": b"",
            "junk": bytes(rng.randrange(256) for _ in range(200)),
            "utf16": text.encode("utf-16"),
            "nan": text.replace('"window_seconds": 1.0', '"window_seconds": NaN').encode(),
        }[how]
        path.write_bytes(data)
        return f"config.json {how}"
    config = json.loads(text)
    if kind == "structure":
        how = rng.choice(["list", "null", "number", "unknown_key", "drop_part", "part_not_dict"])
        if how == "list":
            config = [config]
        elif how == "null":
            config = None
        elif how == "number":
            config = 3
        elif how == "unknown_key":
            config[rng.choice([None, "unet", "diffusion"]) or "bogus"] = {"bogus": 1}
        elif how == "drop_part":
            del config[rng.choice(["autoencoder", "whitener", "unet", "text_encoder", "diffusion"])]
        else:
            config[rng.choice(["autoencoder", "unet", "diffusion"])] = rng.choice([1, "x", []])
        path.write_text(json.dumps(config))
        return f"config.json {how}"
    if kind == "text_encoder":
        value = rng.choice(["/nowhere/te", "../../..", "package:no_such_pkg/x", "owner/name", ""])
        config["text_encoder"]["name_or_path"] = value
        path.write_text(json.dumps(config))
        return f"config.json text_encoder.name_or_path = {value!r}"
    part, key = rng.choice(_config_fields(config))
    holder = config if part is None else config[part]
    old = holder[key]
    if rng.random() < 0.3:
        del holder[key]
        path.write_text(json.dumps(config))
        return f"config.json drops {part}.{key}"
    value = rng.choice(ODD_VALUES)
    if isinstance(old, int | float) and not isinstance(old, bool) and rng.random() < 0.5:
        value = rng.choice([old * 2, old + 1, -old, old * 1000, 0])
    holder[key] = value
    path.write_text(json.dumps(config))
    return f"config.json {part}.{key} = {value!r} (was {old!r})"


def broken_model(good: Path, folder: Path, rng: random.Random) -> tuple[Path, str]:
    """A copy of the model folder ``good`` in ``folder`` with one thing broken."""
    model = folder / "model"
    shutil.copytree(good, model)
    kind = rng.choice(["missing", "truncate", "flip", "tensors", "tensors", "config", "config"])
    kind = rng.choice([kind, kind, "whole"])
    if kind == "whole":
        how = rng.choice(["empty_folder", "a_file", "no_config", "repo_id"])
        shutil.rmtree(model)
        if how == "empty_folder":
            model.mkdir()
        elif how == "a_file":
            model.write_text("not a model")
        elif how == "no_config":
            shutil.copytree(good, model)
            (model / "config.json").unlink()
        else:
            return Path("nobody/no-such-jen1-model"), "model is an uncached repo id"
        return model, f"model folder: {how}"
    if kind == "missing":
        name = rng.choice(ALL_FILES)
        target = model / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        return model, f"missing {name}"
    if kind in ("truncate", "flip"):
        name = rng.choice([*WEIGHT_FILES, "text_encoder/model.safetensors"])
        target = model / name
        data = bytearray(target.read_bytes())
        if kind == "truncate":
            cut = rng.choice([rng.randrange(16), rng.randrange(len(data))])
            target.write_bytes(bytes(data[:cut]))
            return model, f"{name} truncated at byte {cut} of {len(data)}"
        header = struct.unpack("<Q", bytes(data[:8]))[0] + 8
        region = rng.choice([8, header, len(data)])
        count = rng.randint(1, 16)
        for _ in range(count):
            data[rng.randrange(min(region, len(data)))] = rng.randrange(256)
        target.write_bytes(bytes(data))
        return model, f"{name}: {count} bytes changed in the first {region}"
    if kind == "tensors":
        name = rng.choice([*WEIGHT_FILES, *WEIGHT_FILES, "text_encoder/model.safetensors"])
        return model, change_tensors(model / name, rng)
    return model, change_config(model / "config.json", rng)


def _bumped(value: str) -> str:
    """An integer one higher, or the text changed by one character."""
    try:
        return str(int(value) + 1)
    except ValueError:
        return value[:-1] + ("x" if value[-1:] != "x" else "y")


# --- latent files --------------------------------------------------------------------------------
def broken_latents(good: Path, path: Path, rng: random.Random, foreign: Path) -> str:
    """Write to ``path`` the latent file ``good`` with its tensor, bytes or metadata changed, or
    ``foreign`` (latents of another model of the same shapes)."""
    kinds = ["intact", "foreign", "bytes", "bytes", "tensor", "tensor", "metadata", "metadata"]
    kind = rng.choice(kinds)
    if kind in ("intact", "foreign"):
        shutil.copy(good if kind == "intact" else foreign, path)
        return "intact" if kind == "intact" else "latents of another model"
    if kind == "bytes":
        data = bytearray(good.read_bytes())
        how = rng.choice(["truncate", "flip", "header_size", "random", "empty", "wav"])
        if how == "truncate":
            data = data[: rng.randrange(len(data))]
        elif how == "flip":
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == "header_size":
            struct.pack_into("<Q", data, 0, rng.choice([0, 1, 2**63, len(data), 2**32]))
        elif how == "random":
            data = bytearray(rng.randrange(256) for _ in range(rng.choice([8, 64, 4000])))
        elif how == "empty":
            data = bytearray()
        else:
            data = bytearray(b"RIFF\x24\x00\x00\x00WAVEfmt ") + data[16:]
        path.write_bytes(bytes(data))
        return f"latent bytes: {how}"
    tensors, meta = read_tensors(good)
    latents = tensors["latents"]
    if kind == "tensor":
        how = rng.choice(["shape", "dtype", "nan", "inf", "huge", "renamed", "extra", "empty"])
        if how == "shape":
            latents = _reshaped(latents, rng)
        elif how == "dtype":
            latents = latents.to(rng.choice(DTYPES))
        elif how in ("nan", "inf", "huge"):
            latents = latents.clone()
            value = {"nan": float("nan"), "inf": float("-inf"), "huge": 1e30}[how]
            latents.view(-1)[rng.randrange(latents.numel())] = value
        elif how == "renamed":
            tensors = {"latent": latents}
        elif how == "extra":
            tensors["other"] = torch.zeros(2)
        else:
            latents = latents[:, :0].contiguous()
        if how not in ("renamed", "extra"):
            tensors["latents"] = latents
        save_file(tensors, str(path), metadata=meta)
        return f"latent tensor: {how} -> {tuple(latents.shape)} {latents.dtype}"
    key = rng.choice(sorted(meta))
    how = rng.choice(["drop", "value", "value", "value", "all_gone"])
    if how == "drop":
        del meta[key]
    elif how == "all_gone":
        meta = {}
    else:
        values = ["", "abc", "-1", "0", "1e3", "3.5", "99999999999999999999", " 7", "44100"]
        values += ["160", "7", "someone/else", "0" * 64, _bumped(meta.get(key, ""))]
        meta[key] = rng.choice(values)
    save_file(tensors, str(path), metadata=meta or None)
    return f"latent metadata: {how} {key} -> {meta.get(key)!r}"
