"""Print the snapshot of RUN that was written last before RUN's start + MINUTES (wall clock).

python examples/ablation/snapshot_at.py RUNS/main 12
"""

import sys
from pathlib import Path

run, minutes = Path(sys.argv[1]), float(sys.argv[2])
deadline = float((run / "started").read_text()) + 60 * minutes
snapshots = [
    p for p in sorted((run / "snapshots").glob("*.safetensors")) if p.stat().st_mtime <= deadline
]
if not snapshots:
    raise SystemExit(f"no snapshot of {run} before {minutes} minutes")
print(snapshots[-1])
