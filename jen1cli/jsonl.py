"""JSON-lines files (training metadata, evaluation prompts): rows, or a one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_lines(path: Path, error: type[Exception]) -> list[dict[str, Any]]:
    """The objects of a UTF-8 JSON-lines file; ``error`` (a bad-input class) names the bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise error(f"{path} is not UTF-8 text: save it as UTF-8") from err
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{path} line {number} is not valid JSON: {err.msg}") from err
        if not isinstance(row, dict):
            raise error(f"{path} line {number} is not a JSON object")
        rows.append(row)
    return rows
