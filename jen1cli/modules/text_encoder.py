"""Frozen Hugging Face text encoder (§5): prompt -> token states + mask, cached per prompt.

The full model uses FLAN-T5-large's encoder (d = 1024); small models may use any ``AutoModel``
encoder (e.g. a BERT-like sentence-embedding model). The encoder is never trained: its parameters
do not require grad, it stays in eval mode even inside a module put in training mode, and it runs
under ``torch.no_grad``. Weights load from safetensors only, without remote code.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jen1cli.modules import bert_encoder

# T5-family checkpoints hold an encoder-decoder; only the encoder is loaded (the decoder's
# weights are skipped), which halves memory for FLAN-T5.
_ENCODER_ONLY_CLASSES = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
}


class TextEncoder(nn.Module):
    """A frozen encoder and its tokenizer, returning token states [B, L, D] and a mask [B, L]."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        max_length: int = 128,
        cache_size: int = 256,
    ) -> None:
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache_size = cache_size
        # prompt -> its unpadded states [L_i, D] (float32), most recently used last.
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self.model.requires_grad_(False)
        self.model.eval()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        max_length: int = 128,
        revision: str | None = None,
        local_files_only: bool = False,
        cache_dir: str | None = None,
    ) -> TextEncoder:
        """Load a Hub id or local folder: a local BERT folder -> bert_encoder.py (no
        ``transformers`` import, the bundled model's case); T5 family -> its encoder-only class;
        else AutoModel."""
        if Path(name_or_path).is_dir() and bert_encoder.is_supported(name_or_path):
            model = bert_encoder.BertEncoder.from_folder(name_or_path)
            return cls(model, bert_encoder.FastTokenizer(name_or_path), max_length=max_length)
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        hub = {
            "revision": revision,
            "local_files_only": local_files_only,
            "cache_dir": cache_dir,
            "trust_remote_code": False,
        }
        config = AutoConfig.from_pretrained(name_or_path, **hub)
        model_type = getattr(config, "model_type", "")
        if model_type in _ENCODER_ONLY_CLASSES:
            model_cls = getattr(transformers, _ENCODER_ONLY_CLASSES[model_type])
        elif getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"{name_or_path!r} is an encoder-decoder model of type {model_type!r}; "
                f"supported encoder-decoder families: {', '.join(sorted(_ENCODER_ONLY_CLASSES))}"
            )
        else:
            model_cls = AutoModel
        # float32: T5 is known to overflow in float16, and the states are small anyway.
        model = model_cls.from_pretrained(
            name_or_path, config=config, use_safetensors=True, dtype=torch.float32, **hub
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub)
        return cls(model, tokenizer, max_length=max_length)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the model (safetensors) and the tokenizer into the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if not any(path.glob("*.safetensors")):  # never ship pickled weights
            raise RuntimeError(f"save_pretrained wrote no safetensors file into {path}")

    @property
    def hidden_size(self) -> int:
        """Width D of the returned token states."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> TextEncoder:
        """Follow ``mode`` for bookkeeping, but keep the frozen encoder in eval (no dropout)."""
        super().train(mode)
        self.model.eval()
        return self

    def clear_cache(self) -> None:
        """Forget every cached prompt."""
        self._cache.clear()

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> list[Tensor]:
        """Run the encoder on prompts; return each prompt's unpadded states [L_i, D] float32."""
        tokens = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device).bool()  # [B, L]
        empty = [p for p, m in zip(prompts, mask, strict=True) if not m.any()]
        if empty:
            # An all-masked row would make cross-attention's softmax NaN downstream.
            raise ValueError(f"the tokenizer produced no tokens for prompt {empty[0]!r}")
        states = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        # Select by mask rather than slicing, so left-padding tokenizers work too.
        return [s[m].float().clone() for s, m in zip(states, mask, strict=True)]

    def forward(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Encode prompts: states [B, L, D] float32 (zeros at padding) and mask [B, L] bool."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a single string")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("prompts must not be empty")
        found: dict[str, Tensor] = {}
        for p in prompts:
            if p in self._cache:
                self._cache.move_to_end(p)
                found[p] = self._cache[p]
        missing = list(dict.fromkeys(p for p in prompts if p not in found))
        if missing:
            for p, s in zip(missing, self._encode(missing), strict=True):
                found[p] = s
                if self.cache_size > 0:
                    self._cache[p] = s
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

        device = self.device
        length = max(found[p].shape[0] for p in prompts)
        states = torch.zeros(len(prompts), length, self.hidden_size, device=device)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            s = found[p].to(device)
            states[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return states, mask
