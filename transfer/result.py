"""The result contract: every transfer run writes its metrics.json through `write_result`, in one schema.

    {"schema": "hier-aug/transfer-result/1",
     "task", "seed", "weights",                     # what ran (weights as given on the command line)
     "protocol", "protocol_name", "protocol_changes", # "standard" | "paper" | "non-standard" (+ changes) | "demo"
     "metrics": {name: number | None | {...}},       # every value the task table declares (`Task.columns`)
     "load_report": {...} | None,                    # which backbone tensors the weights filled
     "timing": {"started", "finished", "seconds"},
     "versions": {"package", "git", "python", "torch", "torchvision", <engine>: ...},
     "host", ... task details (per-class values, options, run state)}

The report reads a cell only through `Task.metric`, i.e. only from `metrics`; a runner that does not
report a value its task declares fails here, naming the value, instead of leaving a hole in a table.
"""
from __future__ import annotations

import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pretrain.runs.files import write_json
from pretrain.runs.folder import git_commit, package_version

from .tasks import TASKS

SCHEMA = "hier-aug/transfer-result/1"
HEADER = ("schema", "task", "seed", "weights", "protocol", "protocol_name", "protocol_changes", "metrics", "load_report",
          "timing", "versions", "host")
ENGINES = ("detectron2", "mmseg", "mmengine", "mmcv")


def versions() -> dict:
    """This package, its commit, Python, torch, torchvision and every engine this process imported."""
    import torch
    import torchvision

    out = {"package": package_version(), "git": git_commit(), "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__}
    out.update({name: getattr(sys.modules[name], "__version__", "unknown") for name in ENGINES if name in sys.modules})
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def write_result(out: Path, task: str, *, weights: str, seed: int, protocol: str, protocol_name: str, changes: list[str],
                 metrics: dict, load_report: dict | None, started: float, **details) -> dict:
    """Write `out`/metrics.json atomically in the schema above and return the record. ValueError when `metrics`
    lacks a value the task table declares for `task`, or a detail would hide a header field."""
    spec = TASKS[task]
    record = {"metrics": metrics}
    for column, key in spec.columns:
        try:
            value = spec.metric(record, column)
        except (KeyError, TypeError):
            raise ValueError(f"the {task} runner reported no {key!r} in its metrics (it has {sorted(metrics)}); "
                             "the task table (transfer/tasks.py) declares it") from None
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"the {task} runner reported {key} = {value!r}: a number or None is expected")
    clash = sorted(set(details) & set(HEADER))
    if clash:
        raise ValueError(f"the {task} runner's details {clash} would hide fields of the result header")
    now = time.time()
    record = {"schema": SCHEMA, "task": task, "seed": seed, "weights": str(weights), "protocol": protocol,
              "protocol_name": protocol_name, "protocol_changes": list(changes), "metrics": metrics, "load_report": load_report,
              "timing": {"started": _iso(started), "finished": _iso(now), "seconds": round(now - started, 2)},
              "versions": versions(), "host": platform.node(), **details}
    write_json(out / "metrics.json", record)
    return record
