"""TextEncoder: frozen tiny T5 / BERT encoders built offline, masks, cache, safetensors reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    ByT5Tokenizer,
    T5Config,
    T5EncoderModel,
)

from jen1cli.modules.bert_encoder import BertEncoder
from jen1cli.modules.text_encoder import TextEncoder

PROMPTS = ["", "lofi hip hop beat", "a"]


def tiny_t5(max_length: int = 32, cache_size: int = 256) -> TextEncoder:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=384,  # ByT5's 256 bytes + 3 specials + 125 extra ids
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.5,  # large, so a forgotten eval() would show as non-determinism
    )
    model = T5EncoderModel(config)
    return TextEncoder(model, ByT5Tokenizer(), max_length=max_length, cache_size=cache_size)


def count_calls(encoder: TextEncoder) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    encoder.model.register_forward_hook(hook)
    return calls


def test_shapes_and_mask_match_token_counts() -> None:
    enc = tiny_t5()
    states, mask = enc(PROMPTS)
    # ByT5: one token per UTF-8 byte plus EOS; "" is just EOS.
    counts = [len(p.encode()) + 1 for p in PROMPTS]
    assert states.shape == (3, max(counts), 32) and states.dtype == torch.float32
    assert mask.shape == (3, max(counts)) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == counts
    for i, n in enumerate(counts):
        assert mask[i, :n].all() and not mask[i, n:].any()
        assert (states[i, n:] == 0).all()  # padding carries no state
        assert states[i, :n].abs().sum() > 0
    assert enc.hidden_size == 32


def test_truncates_to_max_length() -> None:
    enc = tiny_t5(max_length=8)
    states, mask = enc(["x" * 50])
    assert states.shape[1] == 8 and mask.all()


def test_batched_states_match_single_prompt_states() -> None:
    enc = tiny_t5(cache_size=0)
    states, mask = enc(PROMPTS)
    for i, p in enumerate(PROMPTS):
        alone, _ = enc([p])
        torch.testing.assert_close(states[i, : alone.shape[1]], alone[0], rtol=1e-5, atol=1e-5)


def test_deterministic_frozen_and_without_grad() -> None:
    enc = tiny_t5(cache_size=0)
    enc.train()  # a parent model in training mode must not enable the encoder's dropout
    assert not enc.model.training
    assert all(not p.requires_grad for p in enc.parameters())
    a, _ = enc(PROMPTS)
    b, _ = enc(PROMPTS)
    assert torch.equal(a, b)
    assert not a.requires_grad and a.grad_fn is None
    # Even inside an enable_grad region the states carry no graph.
    with torch.enable_grad():
        c, _ = enc(PROMPTS)
    assert c.grad_fn is None


def test_cache_returns_identical_tensors_without_running_the_model() -> None:
    enc = tiny_t5()
    calls = count_calls(enc)
    first, mask1 = enc(["drums", "bass"])
    assert calls[0] == 1
    second, mask2 = enc(["bass", "drums", "bass"])
    assert calls[0] == 1  # every prompt came from the cache
    assert torch.equal(second[0], first[1][: second.shape[1]])
    assert torch.equal(second[1], first[0][: second.shape[1]])
    # A new prompt runs the model once, for that prompt only.
    enc(["drums", "piano"])
    assert calls[0] == 2
    # Mutating a returned tensor must not corrupt the cache.
    second.zero_()
    third, _ = enc(["drums"])
    assert torch.equal(third[0], first[0][: third.shape[1]])


def test_cache_is_a_bounded_lru() -> None:
    enc = tiny_t5(cache_size=2)
    calls = count_calls(enc)
    enc(["a"])
    enc(["b"])
    enc(["a"])  # refreshes "a": "b" is now the oldest
    enc(["c"])  # evicts "b"
    assert calls[0] == 3
    enc(["a"])
    assert calls[0] == 3
    enc(["b"])
    assert calls[0] == 4


def test_save_and_reload_is_bit_identical(tmp_path: Path) -> None:
    enc = tiny_t5()
    enc.save_pretrained(tmp_path / "te")
    files = {p.name for p in (tmp_path / "te").iterdir()}
    assert "model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files)

    loaded = TextEncoder.from_pretrained(str(tmp_path / "te"), max_length=32, local_files_only=True)
    assert type(loaded.model) is T5EncoderModel  # encoder only, not the encoder-decoder
    assert all(not p.requires_grad for p in loaded.parameters()) and not loaded.model.training
    a, ma = enc(PROMPTS)
    b, mb = loaded(PROMPTS)
    assert torch.equal(a, b) and torch.equal(ma, mb)


def write_vocab(path: Path) -> Path:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "lofi", "hip", "hop", "beat", "##s"]
    path.write_text("\n".join(words) + "\n")
    return path


def test_bert_like_encoder_through_automodel(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=10,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    tokenizer = BertTokenizer(vocab=str(write_vocab(tmp_path / "vocab.txt")))
    enc = TextEncoder(BertModel(config), tokenizer, max_length=16)
    states, mask = enc(["", "lofi hip hop beats"])
    # "" -> [CLS] [SEP]; the other -> [CLS] lofi hip hop beat ##s [SEP].
    assert mask.sum(1).tolist() == [2, 7]
    assert states.shape == (2, 7, 24) and enc.hidden_size == 24

    enc.save_pretrained(tmp_path / "bert")
    loaded = TextEncoder.from_pretrained(
        str(tmp_path / "bert"), max_length=16, local_files_only=True
    )
    # a local BERT folder with tokenizer.json reloads without transformers (bert_encoder.py)
    assert type(loaded.model) is BertEncoder
    again, mask2 = loaded(["", "lofi hip hop beats"])
    assert torch.equal(mask2, mask)
    torch.testing.assert_close(again, states, atol=2e-5, rtol=1e-4)


def test_bad_prompts_are_refused() -> None:
    enc = tiny_t5()
    with pytest.raises(TypeError):
        enc("a single string")
    with pytest.raises(ValueError):
        enc([])


def test_missing_local_model_fails_offline(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        TextEncoder.from_pretrained(str(tmp_path / "nope"), local_files_only=True)
