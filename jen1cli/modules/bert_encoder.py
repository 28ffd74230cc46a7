"""A BERT-family text encoder in plain torch, read straight from a Hugging Face folder.

Why not ``transformers``: importing it costs about 1.5 s of a 5 s ``jen1 generate`` on a laptop
(it pulls in ``torch._dynamo`` and ``torch.distributed``), more than the whole denoising loop of
the bundled model. A BERT encoder is 60 lines of torch, and the folder's ``tokenizer.json`` runs in
the ``tokenizers`` library (Rust, imports in milliseconds). The outputs equal ``BertModel``'s
(tested against it); anything this module does not cover exactly (another architecture, relative
positions, no ``tokenizer.json``) goes through ``transformers`` instead (``is_supported``).

Weights load from safetensors only.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_FILES = ("config.json", "tokenizer.json", "model.safetensors")
_OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def is_supported(folder: str | Path) -> bool:
    """Whether ``folder`` holds a BERT encoder this module reproduces exactly."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in _FILES):
        return False
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False  # transformers then reports the broken file in its own words
    return (
        isinstance(config, dict)
        and config.get("model_type") == "bert"
        and config.get("hidden_act", "gelu") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


class _Layer(nn.Module):
    """One post-norm transformer layer, its parameters named as in ``BertLayer``."""

    def __init__(self, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(width, width))
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(width, width)
        self.attention.output.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(width, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, width)
        self.output.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x [B, L, D]; keep [B, 1, 1, L] bool (True: a real token)."""
        b, n, d = x.shape
        qkv = self.attention.self

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(qkv.query(x)), split(qkv.key(x)), split(qkv.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        attended = attended.transpose(1, 2).reshape(b, n, d)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(attended))
        hidden = F.gelu(self.intermediate.dense(x))  # exact (erf) GELU, as BERT's "gelu"
        return self.output.LayerNorm(x + self.output.dense(hidden))


class BertEncoder(nn.Module):
    """``BertModel`` without its pooler: token ids [B, L] -> ``.last_hidden_state`` [B, L, D]."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = SimpleNamespace(**config)
        width, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(config["vocab_size"], width)
        self.embeddings.position_embeddings = nn.Embedding(config["max_position_embeddings"], width)
        self.embeddings.token_type_embeddings = nn.Embedding(
            config.get("type_vocab_size", 2), width
        )
        self.embeddings.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            _Layer(width, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )
        self.source: Path | None = None  # the folder it was read from, for save_pretrained

    @classmethod
    def from_folder(cls, folder: str | Path) -> BertEncoder:
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(json.loads((folder / "config.json").read_text()))
        state = load_file(folder / "model.safetensors")
        # Checkpoints saved from BertFor* heads prefix the encoder's names with "bert.".
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        wanted = model.state_dict()
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise ValueError(
                f"{folder / 'model.safetensors'} lacks {missing[0]} (and {len(missing) - 1} more)"
            )
        model.load_state_dict({k: state[k].float() for k in wanted}, strict=True)
        model.source = folder
        return model.eval()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> SimpleNamespace:
        n = input_ids.shape[1]
        emb = self.embeddings
        positions = torch.arange(n, device=input_ids.device)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions)
        x = emb.LayerNorm(x + emb.token_type_embeddings.weight[0])  # one segment: type 0
        keep = attention_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return SimpleNamespace(last_hidden_state=x)

    def save_pretrained(self, path: str | Path) -> None:
        """Copy the files it was read from (the weights are frozen, so they are unchanged)."""
        if self.source is None:
            raise RuntimeError("this BertEncoder was not read from a folder; nothing to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in _FILES + _OPTIONAL_FILES:
            if (self.source / name).is_file() and self.source.resolve() != path.resolve():
                shutil.copyfile(self.source / name, path / name)


class FastTokenizer:
    """The folder's ``tokenizer.json`` behind the slice of the ``transformers`` tokenizer call
    that TextEncoder uses: ``tokenizer(prompts, padding=True, truncation=True, max_length=L,
    return_tensors="pt")`` -> ``{"input_ids", "attention_mask"}``."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        self.source = Path(folder)
        self._tokenizer = Tokenizer.from_file(str(self.source / "tokenizer.json"))
        self._tokenizer.no_padding()  # padded here to the batch's longest, as padding=True
        self._tokenizer.no_truncation()
        model_max = math.inf
        config_file = self.source / "tokenizer_config.json"
        if config_file.is_file():
            model_max = json.loads(config_file.read_text()).get("model_max_length", math.inf)
        self.model_max_length = model_max

    def __call__(self, prompts: list[str], *, max_length: int, **_: object) -> dict[str, Tensor]:
        limit = int(min(max_length, self.model_max_length))
        self._tokenizer.enable_truncation(max_length=limit)
        encoded = self._tokenizer.encode_batch(list(prompts))
        length = max(len(e.ids) for e in encoded)
        ids = torch.zeros(len(encoded), length, dtype=torch.long)  # BERT's [PAD] is id 0
        mask = torch.zeros(len(encoded), length, dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
            mask[row, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def save_pretrained(self, path: str | Path) -> None:
        pass  # BertEncoder.save_pretrained copies the tokenizer files with the weights
