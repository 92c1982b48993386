"""A benchmark suite: checkpoints x tasks x seeds, read from YAML and checked.

    name: my-suite
    output: work_dirs/bench/my-suite          # cells and reports go here
    seeds: [0, 1, 2]
    baseline: SimSiam                          # row the deltas are taken against (optional)
    references: true                           # add published rows (benchmarks/references.py)
    checkpoints:
      - {name: SimSiam, path: ckpts/simsiam.pth, method: SimSiam, epochs: 200, data: IN-1k}
      - {name: SimSiam + method, path: ckpts/hier.pth, method: SimSiam-hier, epochs: 200, data: IN-1k}
    tasks:                                     # task -> extra run_transfer.py arguments
      voc_det: [--data-root, /datasets, --num-gpus, "8"]
      linear_cls: [--data, /datasets/imagenet, --dataset, imagenet]
      voc_seg:                                 # or {args, launch}: a launcher instead of `python`
        args: [--data-root, /datasets/VOC2012, --launcher, pytorch]
        launch: torchrun --nproc_per_node 4
A checkpoint path that does not exist from the current folder is taken relative to the suite file;
`output` is relative to the current folder. `path: random` gives a randomly initialised baseline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS = ("voc_det", "coco_det", "coco_instseg", "voc_seg", "cityscapes_seg", "linear_cls", "knn")
ENGINES = {"voc_det": "detectron2", "coco_det": "detectron2", "coco_instseg": "detectron2",
           "voc_seg": "mmseg", "cityscapes_seg": "mmseg"}


class SuiteError(ValueError):
    """A suite file that cannot run; the message names the file and the key."""


@dataclass
class Checkpoint:
    name: str
    path: str
    method: str = ""
    epochs: int | None = None
    data: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-")


@dataclass
class Suite:
    name: str
    output: Path
    checkpoints: list[Checkpoint]
    tasks: dict[str, list[str]]
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str | None = None
    references: bool = True
    launch: dict[str, str] = field(default_factory=dict)  # task -> launcher command ("" = this python)

    def cells(self):
        """Every (checkpoint, task, seed), in the order they run."""
        return [(c, t, s) for c in self.checkpoints for t in self.tasks for s in self.seeds]

    def cell_dir(self, ckpt: Checkpoint, task: str, seed: int) -> Path:
        return self.output / "cells" / ckpt.slug / task / f"s{seed}"


def _path(value: str, base: Path) -> str:
    if value in ("random",) or Path(value).is_absolute() or Path(value).exists():
        return value
    return str(base / value)


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    doc = yaml.safe_load(path.read_text()) or {}
    where = lambda key: f"{path}: {key}"
    unknown = set(doc) - {"name", "output", "seeds", "baseline", "references", "checkpoints", "tasks"}
    if unknown:
        raise SuiteError(f"{path}: unknown keys {sorted(unknown)}")
    if not doc.get("checkpoints"):
        raise SuiteError(where("checkpoints") + " is missing or empty")
    if not doc.get("tasks"):
        raise SuiteError(where("tasks") + " is missing or empty")
    base = path.parent
    ckpts = []
    for i, c in enumerate(doc["checkpoints"]):
        if not isinstance(c, dict) or "name" not in c or "path" not in c:
            raise SuiteError(where(f"checkpoints[{i}]") + " needs at least `name` and `path`")
        extra = set(c) - {"name", "path", "method", "epochs", "data"}
        if extra:
            raise SuiteError(where(f"checkpoints[{i}]") + f" has unknown keys {sorted(extra)}")
        ckpts.append(Checkpoint(**{**c, "path": _path(str(c["path"]), base)}))
    names = [c.name for c in ckpts]
    if len(set(c.slug for c in ckpts)) != len(ckpts):
        raise SuiteError(where("checkpoints") + f" names must be unique: {names}")
    tasks, launch = {}, {}
    for t, args in doc["tasks"].items():
        if t not in TASKS:
            raise SuiteError(where(f"tasks.{t}") + f": unknown task; choose from {', '.join(TASKS)}")
        if isinstance(args, dict):
            extra = set(args) - {"args", "launch"}
            if extra:
                raise SuiteError(where(f"tasks.{t}") + f" has unknown keys {sorted(extra)} (use args, launch)")
            launch[t] = str(args.get("launch") or "")
            args = args.get("args")
        tasks[t] = [str(a) for a in (args or [])]
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise SuiteError(where("seeds") + " must be a list of integers")
    if doc.get("baseline") and doc["baseline"] not in names:
        raise SuiteError(where("baseline") + f" {doc['baseline']!r} is not a checkpoint name ({names})")
    out = Path(doc.get("output") or f"work_dirs/bench/{doc.get('name', path.stem)}")
    return Suite(doc.get("name", path.stem), out, ckpts, tasks, seeds, doc.get("baseline"), doc.get("references", True), launch)
