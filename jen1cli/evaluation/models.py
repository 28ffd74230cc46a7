"""The pretrained networks the metrics look through, loaded from the Hugging Face cache.

- CLAP (``ClapModel``): audio embeddings for FAD, and the text–audio score;
- EnCodec (``EncodecModel``): per-frame encoder embeddings, the other FAD embedding;
- an AudioSet classifier (``ASTForAudioClassification``): label distributions for the KL.

VGGish, the embedding of the original FAD, ships only as pickled PyTorch weights or TensorFlow
checkpoints; we never unpickle files from the network, so it is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jen1cli.evaluation import DEFAULT_CLAP, DEFAULT_CLASSIFIER, DEFAULT_ENCODEC
from jen1cli.model import ModelNotFoundError

EMBEDDINGS = ("clap", "encodec")
CLAP_WINDOW_S = 10.0  # CLAP's training clips; longer audio is embedded window by window


def _load(loader: Any, name_or_path: str, **kwargs) -> Any:
    """``loader.from_pretrained`` with a one-line error that says how to get the weights."""
    try:
        return loader.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"cannot load the evaluation model '{name_or_path}' ({str(err).splitlines()[0]}): "
            f"download it once with network (`hf download {name_or_path}`) or pass a local folder"
        ) from err


def _mono(audio: Tensor) -> np.ndarray:
    return audio.mean(0).cpu().numpy().astype(np.float32)


def _windows(audio: Tensor, sample_rate: int, seconds: float) -> list[Tensor]:
    """Consecutive windows of ``seconds`` ([C, N] each); a short tail is kept only if it is the
    whole clip or at least half a window, so tiny leftovers do not weigh as much as full windows."""
    size = round(seconds * sample_rate)
    parts = [audio[:, i : i + size] for i in range(0, audio.shape[-1], size)]
    return [p for k, p in enumerate(parts) if k == 0 or p.shape[-1] * 2 >= size]


@dataclass
class Clap:
    """CLAP: one embedding per ≤ 10 s window of audio, and one per text."""

    model: Any
    features: Any
    tokenizer: Any
    name: str
    device: str = "cpu"

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_CLAP, device: str = "cpu") -> Clap:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        model = _load(ClapModel, name_or_path).to(device).eval()
        features = _load(ClapFeatureExtractor, name_or_path)
        tokenizer = _load(AutoTokenizer, name_or_path)
        return cls(model, features, tokenizer, name_or_path, device)

    @property
    def sample_rate(self) -> int:
        return int(self.features.sampling_rate)

    @torch.no_grad()
    def embed_audio(self, audio: Tensor) -> Tensor:
        """[C, N] at ``sample_rate`` → [windows, D] (L2-normalised, as CLAP compares them)."""
        windows = [_mono(w) for w in _windows(audio, self.sample_rate, CLAP_WINDOW_S)]
        fused = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        # Windows never exceed CLAP's 10 s, so "rand_trunc" never cuts at random: deterministic.
        inputs = self.features(
            windows,
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            truncation="fusion" if fused else "rand_trunc",
            padding="repeatpad",
        )
        # With fusion, the extractor marks one random input as "longer" when none is; none is
        # (windows ≤ 10 s), and a random flag would make the embeddings random too.
        inputs["is_longer"][:] = False
        out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in inputs.items()})
        return torch.nn.functional.normalize(_pooled(out).float(), dim=-1).cpu()

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> Tensor:
        """[len(texts), D], L2-normalised."""
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k != "token_type_ids"}
        out = self.model.get_text_features(**tokens)
        return torch.nn.functional.normalize(_pooled(out).float(), dim=-1).cpu()


def _pooled(out: Any) -> Tensor:
    """``get_*_features`` return the projected embedding, or (newer transformers) an output
    object that holds it as ``pooler_output``."""
    return out if isinstance(out, Tensor) else out.pooler_output


@dataclass
class Encodec:
    """EnCodec's encoder: one continuous (pre-quantiser) embedding per latent frame."""

    model: Any
    name: str
    device: str = "cpu"

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_ENCODEC, device: str = "cpu") -> Encodec:
        from transformers import EncodecModel

        return cls(_load(EncodecModel, name_or_path).to(device).eval(), name_or_path, device)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self.model.config.audio_channels)

    @torch.no_grad()
    def embed_audio(self, audio: Tensor) -> Tensor:
        """[C, N] at ``sample_rate`` (C = the model's channels) → [frames, D].

        Chunk by chunk as EnCodec encodes (1 s for the 48 kHz model, each chunk divided by its RMS
        when the model normalises, which its encoder was trained on); that also bounds memory.
        Models without chunking get 10 s pieces, which only bounds memory.
        """
        config = self.model.config
        size = config.chunk_length or round(10 * self.sample_rate)
        out = []
        for start in range(0, audio.shape[-1], size):
            chunk = audio[None, :, start : start + size].to(self.device)
            if config.normalize:
                scale = chunk.mean(1, keepdim=True).pow(2).mean(2, keepdim=True).sqrt() + 1e-8
                chunk = chunk / scale
            out.append(self.model.encoder(chunk)[0].T)  # [frames, D]
        return torch.cat(out).float().cpu()


@dataclass
class AudioSetClassifier:
    """An AudioSet tagger: a distribution over its labels per clip (windows averaged)."""

    model: Any
    features: Any
    name: str
    device: str = "cpu"

    @classmethod
    def load(
        cls, name_or_path: str = DEFAULT_CLASSIFIER, device: str = "cpu"
    ) -> AudioSetClassifier:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        model = _load(AutoModelForAudioClassification, name_or_path).to(device).eval()
        return cls(model, _load(AutoFeatureExtractor, name_or_path), name_or_path, device)

    @property
    def sample_rate(self) -> int:
        return int(self.features.sampling_rate)

    @property
    def window_seconds(self) -> float:
        # AST's input is `max_length` frames of 10 ms (1024 → 10.24 s)
        return float(getattr(self.features, "max_length", 1024)) / 100.0

    @torch.no_grad()
    def label_distribution(self, audio: Tensor) -> Tensor:
        """[C, N] at ``sample_rate`` → [labels], the softmax over the label logits, averaged over
        the clip's windows (a distribution, so the KL between two clips is defined)."""
        windows = [_mono(w) for w in _windows(audio, self.sample_rate, self.window_seconds)]
        # the filterbank needs a few frames (25 ms each): pad a tiny clip with silence
        shortest = self.sample_rate // 10
        windows = [np.pad(w, (0, max(0, shortest - len(w)))) for w in windows]
        inputs = self.features(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
        return logits.float().softmax(-1).mean(0).cpu()
