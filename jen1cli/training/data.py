"""Training data: captioned audio folders, pre-encoded latent caches, and a resumable sampler.

A data folder follows Hugging Face's *audiofolder* convention: audio files plus a ``metadata.jsonl``
(one JSON object per line) or ``metadata.csv`` whose ``file_name`` column names each file relative
to the folder and whose ``text`` column holds its caption. Other columns are kept on each
`AudioEntry` (``entry.metadata``) but not returned by ``__getitem__``.

Reproducible, resumable randomness: nothing here draws from a global RNG. The crop of item i in
epoch e is a pure function of (seed, e, i), and `ResumableSampler` yields ``(epoch, index)`` keys
from a permutation that is a pure function of (seed, epoch). Because the epoch travels inside the
key, crops are right even in persistent DataLoader workers and under ``accelerate``, whose
DataLoader wrapper calls the sampler's ``set_epoch`` but then not the dataset's. Plain integer
indices work too and use the dataset's own ``set_epoch`` value.
"""

from __future__ import annotations

import csv
import logging
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from jen1cli.audio import AudioError, audio_info, read_audio_segment
from jen1cli.jsonl import read_json_lines

logger = logging.getLogger(__name__)

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
LATENT_KEY = "latents"  # the tensor name in a latent-cache file: [D, T] frames
_EXPECTED = (
    "a folder of audio files with a metadata.jsonl (one JSON object per line, e.g. "
    '{"file_name": "song.wav", "text": "a calm piano piece"}) or a metadata.csv with '
    "file_name and text columns"
)
# What can go wrong reading a file that was fine at scan time (deleted, truncated, locked). Kept
# narrow on purpose: a bug (a RuntimeError from torch, say) must crash, not skip every file.
_READ_ERRORS = (AudioError, OSError)

Key = int | tuple[int, int]  # a dataset index, or (epoch, index) as ResumableSampler yields


class DatasetError(ValueError):
    """The data folder or latent cache cannot be used for training."""


@dataclass
class AudioEntry:
    """One usable audio file of the folder, as found by the scan."""

    path: Path
    text: str
    sample_rate: int
    frames: int
    metadata: dict[str, Any] = field(default_factory=dict)  # extra metadata columns

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def read_metadata(data_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of the folder's ``metadata.jsonl`` (preferred) or ``metadata.csv``, as dicts."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"data folder not found: {data_dir} (expected {_EXPECTED})")
    jsonl, csv_path = (data_dir / name for name in METADATA_FILES)
    if jsonl.is_file():
        if csv_path.is_file():
            logger.warning("both metadata.jsonl and metadata.csv in %s: using the .jsonl", data_dir)
        rows = read_json_lines(jsonl, DatasetError)
    elif csv_path.is_file():
        rows = _read_csv(csv_path)
    else:
        raise DatasetError(f"no metadata.jsonl or metadata.csv in {data_dir}: expected {_EXPECTED}")
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("file_name"), str) or not row["file_name"]:
            raise DatasetError(f"metadata row {number} has no file_name: expected {_EXPECTED}")
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file_name", "text"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path} lacks column(s) {sorted(missing)}: expected {_EXPECTED}")
        return list(reader)


def crop_start(seed: int, epoch: int, index: int, max_start: int) -> int:
    """A crop offset in 0..max_start that depends on (seed, epoch, index) only."""
    # str seeds hash through SHA-512 and random() is stable across Python versions.
    u = random.Random(f"{seed}:{epoch}:{index}").random()
    return min(int(u * (max_start + 1)), max_start)


def _split_key(key: Key, default_epoch: int) -> tuple[int, int]:
    """(epoch, index) from a sampler key."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return default_epoch, int(key)


class _CroppingDataset(Dataset):
    """Epoch-aware random crops, with unreadable items replaced by the next readable one."""

    seed: int
    skipped: Counter[str]
    _failed: set[int]

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer keys."""
        self.epoch = epoch

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        raise NotImplementedError

    def __getitem__(self, key: Key) -> dict[str, Any]:
        epoch, index = _split_key(key, self.epoch)
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f"index {index} out of range for {count} items")
        # A file that became unreadable is replaced by the next one in index order (the same
        # choice in every process and on every resume), and counted. Never a crash mid-run.
        for step in range(count):
            candidate = (index + step) % count
            if candidate in self._failed:
                continue
            try:
                return self._load(epoch, candidate)
            except _READ_ERRORS as err:
                self._failed.add(candidate)
                self.skipped["unreadable during training"] += 1
                # Counts in DataLoader workers stay in the worker: the log line is what reaches you.
                logger.warning("skipping %s: %s", self._describe(candidate), err)
        raise DatasetError("every file of the dataset has become unreadable")


class AudioTextDataset(_CroppingDataset):
    """Random ``seconds``-long crops of captioned audio.

    Items are ``{"audio": [C, N] float32, "text": str, "index": int, "length": int}``.

    The folder is scanned once (file headers only). Files that are missing, unreadable, uncaptioned
    or shorter than ``min(min_seconds, seconds)`` are skipped and counted by reason in
    ``skipped``; a file shorter than ``seconds`` but long enough is used zero-padded at the end,
    and ``length`` says how many of the N samples are real audio. Only the crop's frames are read.
    """

    def __init__(
        self,
        data_dir: str | Path,
        seconds: float,
        sample_rate: int = 48_000,
        channels: int = 2,
        seed: int = 0,
        min_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self.data_dir = Path(data_dir)
        self.seconds = seconds
        self.sample_rate = sample_rate
        self.channels = channels
        self.seed = seed
        self.min_seconds = min(min_seconds, seconds)
        self.num_samples = round(seconds * sample_rate)  # N, the length of every crop
        self.skipped: Counter[str] = Counter()
        self._failed: set[int] = set()
        self.entries = self._scan(read_metadata(self.data_dir))
        if not self.entries:
            raise DatasetError(
                f"no usable audio in {self.data_dir} "
                f"(skipped: {self.skipped_summary() or 'none'}); expected {_EXPECTED}, "
                f"files at least {self.min_seconds:g} s long"
            )

    def _scan(self, rows: list[dict[str, Any]]) -> list[AudioEntry]:
        entries = []
        for row in rows:
            path = self.data_dir / row["file_name"]
            text = row.get("text")
            if not isinstance(text, str):
                self.skipped["no text"] += 1
                continue
            if not path.is_file():
                self.skipped["missing file"] += 1
                continue
            try:
                info = audio_info(path)
            except _READ_ERRORS as err:
                logger.debug("unreadable %s: %s", path, err)
                self.skipped["unreadable"] += 1
                continue
            if info.frames <= 0 or info.frames < self.min_seconds * info.sample_rate:
                self.skipped["too short"] += 1
                continue
            extra = {k: v for k, v in row.items() if k not in ("file_name", "text")}
            entries.append(AudioEntry(path, text, info.sample_rate, info.frames, extra))
        return entries

    def skipped_summary(self) -> str:
        """E.g. ``"2 missing file, 1 too short"``; empty when nothing was skipped."""
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def total_seconds(self) -> float:
        return sum(e.duration_s for e in self.entries)

    def _describe(self, index: int) -> str:
        return str(self.entries[index].path)

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        # Choose the crop on the file's own sample grid, so no resampling is needed to place it.
        crop_frames = math.ceil(self.seconds * entry.sample_rate)
        start = crop_start(self.seed, epoch, index, max(0, entry.frames - crop_frames))
        audio = read_audio_segment(
            entry.path,
            start / entry.sample_rate,
            self.seconds,
            sample_rate=self.sample_rate,
            channels=self.channels,
        )  # [C, ~N]
        # Resampling may be a sample off, and a short file comes back short: fix the length.
        audio = audio[:, : self.num_samples].to(torch.float32)
        audio = F.pad(audio, (0, self.num_samples - audio.shape[-1]))
        real = round((entry.frames - start) * self.sample_rate / entry.sample_rate)
        return {
            "audio": audio,
            "text": entry.text,
            "index": index,
            "length": min(self.num_samples, real),
        }


@dataclass
class LatentEntry:
    """One usable file of a latent cache."""

    path: Path
    text: str
    frames: int
    metadata: dict[str, str] = field(default_factory=dict)


def save_latent_item(
    path: str | Path, latents: Tensor, text: str, metadata: dict[str, str] | None = None
) -> None:
    """Write one latent-cache file: tensor ``latents`` [D, T] and the caption in the header."""
    if latents.dim() != 2:
        raise ValueError(f"latents must be [D, T], got {tuple(latents.shape)}")
    header = {**(metadata or {}), "text": text}
    save_file({LATENT_KEY: latents.detach().cpu().contiguous()}, str(path), metadata=header)


class LatentCacheDataset(_CroppingDataset):
    """Random ``frames``-long crops of pre-encoded latents.

    Items are ``{"latents": [D, frames] float32, "text": str, "index": int, "length": int}``. The
    cache is a folder of ``*.safetensors`` files (searched recursively), each holding a tensor
    ``latents`` [D, T] and its caption as header metadata ``text`` (see `save_latent_item`); files
    whose D differs from the first usable file's are skipped. Only the crop's frames are read.
    Latents shorter than ``frames`` but at least ``min_frames`` are zero-padded at the end
    (default: no padding, shorter ones are skipped): a zero latent is not silence, so padding is
    only safe if the trainer masks by ``length``.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        frames: int,
        seed: int = 0,
        min_frames: int | None = None,
    ) -> None:
        super().__init__()
        if frames <= 0:
            raise ValueError(f"frames must be positive, got {frames}")
        self.cache_dir = Path(cache_dir)
        self.frames = frames
        self.seed = seed
        self.min_frames = frames if min_frames is None else min(min_frames, frames)
        self.latent_dim: int | None = None
        self.skipped: Counter[str] = Counter()
        self._failed: set[int] = set()
        if not self.cache_dir.is_dir():
            raise DatasetError(f"latent cache folder not found: {self.cache_dir}")
        files = sorted(self.cache_dir.rglob("*.safetensors"))
        self.entries = [entry for path in files if (entry := self._scan(path))]
        if not self.entries:
            raise DatasetError(
                f"no usable latent file in {self.cache_dir} (skipped: "
                f"{', '.join(f'{n} {r}' for r, n in sorted(self.skipped.items())) or 'none'}); "
                f"expected *.safetensors files with a '{LATENT_KEY}' tensor [D, T] of at least "
                f"{self.min_frames} frames and a 'text' metadata entry"
            )

    def _scan(self, path: Path) -> LatentEntry | None:
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                if LATENT_KEY not in f.keys():
                    self.skipped[f"no '{LATENT_KEY}' tensor"] += 1
                    return None
                shape = f.get_slice(LATENT_KEY).get_shape()
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            logger.debug("unreadable %s: %s", path, err)
            self.skipped["unreadable"] += 1
            return None
        if "text" not in header:
            self.skipped["no text"] += 1
            return None
        if len(shape) != 2 or (self.latent_dim is not None and shape[0] != self.latent_dim):
            self.skipped["wrong latent shape"] += 1
            return None
        if shape[1] < self.min_frames:
            self.skipped["too short"] += 1
            return None
        self.latent_dim = shape[0]
        extra = {k: v for k, v in header.items() if k != "text"}
        return LatentEntry(path, header["text"], shape[1], extra)

    def __len__(self) -> int:
        return len(self.entries)

    def _describe(self, index: int) -> str:
        return str(self.entries[index].path)

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        start = crop_start(self.seed, epoch, index, max(0, entry.frames - self.frames))
        try:
            with safe_open(str(entry.path), framework="pt") as f:
                latents = f.get_slice(LATENT_KEY)[:, start : start + self.frames]  # [D, ≤F]
        except Exception as err:  # normalise safetensors' own errors into a skippable one
            raise OSError(f"cannot read {entry.path}: {err}") from err
        length = latents.shape[-1]
        latents = F.pad(latents.to(torch.float32), (0, self.frames - length))
        return {"latents": latents, "text": entry.text, "index": index, "length": length}


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` in a per-epoch permutation fixed by (seed, epoch); resumable.

    Distributed training: the sampler yields the *global* order, identical in every process, and
    ``accelerator.prepare(dataloader)`` splits each run of ``num_processes`` consecutive batches
    between the processes; do not shard it again. The sampler cannot see how far training got
    (DataLoader prefetching runs it ahead), so the loop reports progress: ``advance(n)`` after
    each step with n = the global number of samples consumed (batch size × processes), and
    ``set_epoch(epoch + 1)`` when a pass ends. ``state_dict()`` then holds (epoch, position), and
    after ``load_state_dict`` the next iteration yields exactly the rest of that epoch's order.
    """

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True) -> None:
        if num_items <= 0:
            raise ValueError(f"num_items must be positive, got {num_items}")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0  # samples of this epoch already consumed by training
        self._start = 0  # where the next iteration begins

    def order(self, epoch: int) -> np.ndarray:
        """The whole permutation of ``epoch``."""
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning; the same epoch again is a no-op (keeps a resume)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = self._start = 0

    def advance(self, num_samples: int) -> None:
        """Record that training consumed ``num_samples`` more samples of this epoch."""
        self.position = min(self.num_items, self.position + num_samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.order(epoch)[self._start :]:
            yield epoch, int(index)

    def __len__(self) -> int:
        return self.num_items - self._start

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "num_items"}``."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_items": self.num_items,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at a saved data position; refuses a dataset of another size or seed."""
        if int(state["num_items"]) != self.num_items or int(state["seed"]) != self.seed:
            raise ValueError(
                f"the checkpoint's data order was for {state['num_items']} items with seed "
                f"{state['seed']}, this run has {self.num_items} with seed {self.seed}: "
                "the dataset changed, so the saved data position no longer applies"
            )
        self.epoch = int(state["epoch"])
        self.position = self._start = int(state["position"])
