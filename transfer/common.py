"""What every transfer task writes: metrics.json (atomically), the resolved config, the load report."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def finite_or_none(x):
    """NaN/inf (e.g. COCO APl with no large objects, IoU of an absent class) -> None, so files stay strict JSON."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def run_record(task: str, weights: str, seed: int, protocol: str, changes: list[str] | None = None, **extra) -> dict:
    """The header of every metrics.json: task, weights, seed, protocol ("standard", "non-standard" with
    the list of changes, or "demo"), and where it ran."""
    return {"task": task, "weights": str(weights), "seed": seed, "protocol": protocol, "protocol_changes": changes or [],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "git": git_sha(), **extra}
