"""On the job's machine: rebuild a loadable fp32 model.safetensors from compact.safetensors.

python expand_text_encoder.py FOLDER      # FOLDER as written by trim_text_encoder.py
"""

import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

folder = Path(sys.argv[1])
with safe_open(folder / "compact.safetensors", "pt") as f:
    key = f.metadata()["embedding_key"]
weights = load_file(folder / "compact.safetensors")
ids, rows, shape = weights.pop("_used_ids"), weights.pop("_used_rows"), weights.pop("_shape")
table = torch.zeros(*shape.tolist())  # rows no training caption uses stay zero
table[ids] = rows.float()
weights = {k: v.float() for k, v in weights.items()}
weights[key] = table
save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
(folder / "compact.safetensors").unlink()
