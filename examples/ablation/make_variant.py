"""Write a diffusion-ablation config: the bundled model's config.json with a few fields changed.

    python examples/ablation/make_variant.py models/jen1-demo/config.json out.json \\
        unet.pooled_text=true diffusion.loss_weighting=min_snr
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jen1cli.config import Jen1Config


def main() -> None:
    source, target, *changes = sys.argv[1:]
    data = json.loads(Path(source).read_text())
    for change in changes:
        key, _, raw = change.partition("=")
        part, _, field = key.partition(".")
        try:
            data[part][field] = json.loads(raw)  # numbers, booleans, lists
        except json.JSONDecodeError:
            data[part][field] = raw  # a bare string such as min_snr
    Jen1Config.from_dict(data).save(target)  # validates, refuses unknown fields


if __name__ == "__main__":
    main()
