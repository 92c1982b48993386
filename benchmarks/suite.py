"""A benchmark suite: checkpoints x tasks x seeds, read from YAML and checked.

    name: my-suite
    output: work_dirs/bench/my-suite          # cells and reports go here
    seeds: [0, 1, 2]
    baseline: SimSiam                          # row the differences are taken against (optional)
    references: true                           # add published rows (benchmarks/references.py)
    checkpoints:
      - {name: SimSiam, path: ckpts/simsiam.pth, method: SimSiam, epochs: 200, data: IN-1k}
      - {name: SimSiam + method, path: ckpts/hier.pth, method: SimSiam-hier, epochs: 200, data: IN-1k}
      - {name: no expansion, config: configs/pretrain/simsiam-hier-noexpand_resnet50_8xb32-coslr-200e_in100.yaml,
         overrides: [optim.epochs=100]}       # a row the runner pretrains itself (ablations)
    pretrain:                                  # how `config` rows are pretrained (optional)
      overrides: [data.train=/datasets/imagenet/train]   # for every config row, before the row's own
      launch: torchrun --nproc_per_node 8      # default: this python
      per_seed: true                           # one pretraining per seed (train.seed=seed; cell seed s uses it)
    tasks:                                     # task -> extra run_transfer.py arguments
      voc_det: [--data-root, /datasets, --num-gpus, "8"]
      linear_cls: [--data, /datasets/imagenet, --dataset, imagenet]
      knn@layer2: [--data, /datasets/imagenet, --stage, "2"]   # TASK@LABEL: another column of the same task
      voc_seg:                                 # or {args, launch}: a launcher instead of `python`
        args: [--data-root, /datasets/VOC2012, --launcher, pytorch]
        launch: torchrun --nproc_per_node 4
A checkpoint path or config that does not exist from the current folder is taken relative to the suite
file (configs also relative to the project); `output` is relative to the current folder. All become
absolute paths, since the cells run from the project folder. `path: random`
gives a randomly initialised baseline. `${VAR}` and `${VAR:-default}` in any string are replaced by
environment variables.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pretrain.config.shipped import configs_dir, shipped
from pretrain.runs.folder import RUN_FILE, differences
from transfer.common import request_identity
from transfer.result import SCHEMA
from transfer.tasks import TASKS, task_of


class SuiteError(ValueError):
    """A suite file that cannot run; the message names the file and the key."""


@dataclass
class Checkpoint:
    """A row: a checkpoint file (`path`), or a pretraining config the runner pretrains (`config`)."""

    name: str
    path: str = ""
    method: str = ""
    epochs: int | None = None
    data: str = ""
    config: str = ""
    overrides: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-")


@dataclass
class Pretraining:
    overrides: list[str] = field(default_factory=list)
    launch: str = ""
    per_seed: bool = False


def _recorded(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


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
    pretrain: Pretraining = field(default_factory=Pretraining)
    path: Path | None = None  # the suite file it was read from (absolute)

    def cells(self):
        """Every (checkpoint, task column, seed), in the order they run."""
        return [(c, t, s) for c in self.checkpoints for t in self.tasks for s in self.seeds]

    def cell_dir(self, ckpt: Checkpoint, task: str, seed: int) -> Path:
        return self.output / "cells" / ckpt.slug / task.replace("@", "_") / f"s{seed}"

    def pretrainings(self, ckpt: Checkpoint) -> list[int | None]:
        """The pretraining runs of a config row: one per seed (per_seed) or one (None); none for a path row."""
        if not ckpt.config:
            return []
        return list(self.seeds) if self.pretrain.per_seed else [None]

    def pretrain_dir(self, ckpt: Checkpoint, seed: int | None) -> Path:
        return self.output / "pretrain" / ckpt.slug / ("" if seed is None else f"s{seed}")

    def weights(self, ckpt: Checkpoint, seed: int) -> str:
        """What the cell (ckpt, ·, seed) evaluates: the row's file, or its pretraining's last.pth."""
        if not ckpt.config:
            return ckpt.path
        return str(self.pretrain_dir(ckpt, seed if self.pretrain.per_seed else None) / "last.pth")

    def cell_args(self, ckpt: Checkpoint, task: str, seed: int) -> list[str]:
        """The arguments of `run_transfer.py --task <task of the column>` for this cell."""
        return ["--weights", self.weights(ckpt, seed), "--seed", str(seed), "--output", str(self.cell_dir(ckpt, task, seed)),
                *self.tasks[task]]

    def pretrain_overrides(self, ckpt: Checkpoint, seed: int | None) -> list[str]:
        """The KEY=VALUE overrides of a config row's pretraining (the suite's, the row's, its seed and folder)."""
        return [*self.pretrain.overrides, *ckpt.overrides, *([f"train.seed={seed}"] if seed is not None else []),
                f"train.output={self.pretrain_dir(ckpt, seed)}"]

    def cell_state(self, ckpt: Checkpoint, task: str, seed: int) -> tuple[str, list[str]]:
        """(state, differences): "done" (its run finished with the inputs this cell asks for now), "stale" (it
        finished with other inputs: the differences), "failed", "skipped" or "todo" (also a run recorded as still
        running, whatever files it left: killed after an evaluation wrote metrics.json, it resumes)."""
        folder = self.cell_dir(ckpt, task, seed)
        if (folder / "metrics.json").is_file():
            rec = _recorded(folder)
            if rec is not None and rec.get("status") == "running":  # killed after (or while) writing its result
                return "todo", [f"{folder / RUN_FILE}: the run is recorded as still running; rerunning resumes it"]
            if rec is None or rec.get("status") != "finished":
                return "stale", [f"{folder / RUN_FILE}: no finished run recorded"]
            diff = differences(rec.get("request") or {}, request_identity(task_of(task), self.cell_args(ckpt, task, seed)))
            return ("stale", diff) if diff else _result_at_the_door(folder / "metrics.json", task_of(task), seed)
        for name, state in (("skipped.json", "skipped"), ("failed.json", "failed")):
            if (folder / name).is_file():
                return state, []
        return "todo", []

    def pretrain_state(self, ckpt: Checkpoint, seed: int | None) -> tuple[str, list[str]]:
        """(state, differences) of a config row's pretraining: "done" (pretrain_summary.json reports the whole
        schedule and run.json the config this suite asks for now), "stale" (finished with another config),
        "failed" (failed.json), or "todo" (not started, or stopped part-way: rerunning resumes from last.pth)."""
        from pretrain.config.config import load_config
        from pretrain.engine.outputs import run_identity

        folder = self.pretrain_dir(ckpt, seed)
        summary = folder / "pretrain_summary.json"
        if summary.is_file() and (s := json.loads(summary.read_text())).get("steps") == s.get("total_steps"):
            rec = _recorded(folder)
            if rec is None:
                return "stale", [f"{folder / RUN_FILE}: no run recorded"]
            diff = differences(rec["identity"], run_identity(load_config(ckpt.config, self.pretrain_overrides(ckpt, seed)))[0])
            return ("stale", diff) if diff else ("done", [])
        return ("failed" if (folder / "failed.json").is_file() else "todo"), []


def _result_at_the_door(path: Path, task: str, seed: int) -> tuple[str, list[str]]:
    """("done", []) when metrics.json is a result of this schema for this task and seed; else ("stale", why):
    a file copied from another cell, edited by hand, or written before the result schema."""
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return "stale", [f"{path}: unreadable ({e})"]
    got = {"schema": m.get("schema"), "task": m.get("task"), "seed": m.get("seed")}
    want = {"schema": SCHEMA, "task": task, "seed": seed}
    why = [f"{path}: {k} {got[k]!r}, this cell's is {want[k]!r}" for k in want if got[k] != want[k]]
    return ("stale", why) if why else ("done", [])


def _path(value: str, base: Path, *more: Path) -> str:
    """An absolute path (cells run from the project folder): as given if it exists from the current folder,
    else the first of `more` where it exists, else relative to `base`."""
    if value in ("random",):
        return value
    if Path(value).is_absolute() or Path(value).exists():
        return str(Path(value).resolve())
    return str(next((b / value for b in more if (b / value).exists()), base / value).resolve())


def _config_path(value: str, base: Path) -> str:
    """A row's pretraining config: as `_path`, then a shipped preset named `configs/...` (`pretrain.config.shipped`)."""
    found = _path(value, base)
    return found if Path(found).exists() else str(shipped(value).resolve())


_VAR = re.compile(r"\$\{(\w+)(:-([^}]*))?\}")


def _expand(value, where: str):
    """${VAR} / ${VAR:-default} in every string of a YAML value, from the environment."""
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is None:
            raise SuiteError(f"{where}: ${{{m.group(1)}}} is not set; export {m.group(1)}=... or write ${{{m.group(1)}:-default}}")
        return m.group(3)

    return _VAR.sub(sub, value)


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    named = configs_dir() / "benchmarks" / f"{path.name}.yaml"  # a shipped suite by name: ablation_demo
    if not path.exists() and path.suffix == "" and len(path.parts) == 1 and named.is_file():
        path = named
    if not path.is_file():
        shipped_names = sorted(p.stem for p in (configs_dir() / "benchmarks").glob("*.yaml"))
        raise SuiteError(f"{path}: {'is a folder, not a suite file' if path.is_dir() else 'no such suite file'} "
                         f"(shipped suites, by name: {', '.join(shipped_names)})")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(doc, dict):
        raise SuiteError(f"{path}: holds a YAML {type(doc).__name__}; a suite is a mapping (name:, checkpoints:, tasks:, ...)")
    doc = _expand(doc, str(path))
    where = lambda key: f"{path}: {key}"
    unknown = set(doc) - {"name", "output", "seeds", "baseline", "references", "checkpoints", "tasks", "pretrain"}
    if unknown:
        raise SuiteError(f"{path}: unknown keys {sorted(unknown)}")
    if not doc.get("checkpoints"):
        raise SuiteError(where("checkpoints") + " is missing or empty")
    if not doc.get("tasks"):
        raise SuiteError(where("tasks") + " is missing or empty")
    base = path.parent.resolve()
    ckpts = []
    for i, c in enumerate(doc["checkpoints"]):
        if not isinstance(c, dict) or "name" not in c or ("path" in c) == ("config" in c):
            raise SuiteError(where(f"checkpoints[{i}]") + " needs `name` and one of `path` (a checkpoint) or `config` (pretrained by the runner)")
        extra = set(c) - {"name", "path", "method", "epochs", "data", "config", "overrides"}
        if extra:
            raise SuiteError(where(f"checkpoints[{i}]") + f" has unknown keys {sorted(extra)}")
        if "config" in c:
            c = {**c, "config": _config_path(str(c["config"]), base), "overrides": [str(o) for o in c.get("overrides") or []]}
            if not Path(c["config"]).is_file():
                raise SuiteError(where(f"checkpoints[{i}].config") + f" {c['config']} is not a file")
        elif c.get("overrides"):
            raise SuiteError(where(f"checkpoints[{i}].overrides") + " only applies to a `config` row")
        else:
            c = {**c, "path": _path(str(c["path"]), base)}
        ckpts.append(Checkpoint(**c))
    names = [c.name for c in ckpts]
    if len(set(c.slug for c in ckpts)) != len(ckpts):
        raise SuiteError(where("checkpoints") + f" names must be unique: {names}")
    tasks, launch = {}, {}
    for t, args in doc["tasks"].items():
        if task_of(t) not in TASKS:
            raise SuiteError(where(f"tasks.{t}") + f": unknown task; choose from {', '.join(TASKS)} (TASK@LABEL for variants)")
        if isinstance(args, (str, int, float)) or (args is not None and not isinstance(args, (list, dict))):
            raise SuiteError(where(f"tasks.{t}") + " must be a list of run_transfer.py arguments or {args, launch}")
        if isinstance(args, dict):
            extra = set(args) - {"args", "launch"}
            if extra:
                raise SuiteError(where(f"tasks.{t}") + f" has unknown keys {sorted(extra)} (use args, launch)")
            launch[t] = str(args.get("launch") or "")
            args = args.get("args")
        tasks[t] = [str(a) for a in (args or [])]
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SuiteError(where("seeds") + " must be a list of integers")
    if not seeds:
        raise SuiteError(where("seeds") + " is empty: give at least one seed (e.g. seeds: [0]), or leave the key out for [0]")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise SuiteError(where("seeds") + f" repeats {repeated}: a seed gives the same run each time, so a repeat adds no "
                         "sample; list each seed once")
    if doc.get("baseline") and doc["baseline"] not in names:
        raise SuiteError(where("baseline") + f" {doc['baseline']!r} is not a checkpoint name ({names})")
    pre = doc.get("pretrain") or {}
    if not isinstance(pre, dict) or set(pre) - {"overrides", "launch", "per_seed"}:
        raise SuiteError(where("pretrain") + " takes overrides (a list), launch (a command) and per_seed (true/false)")
    pretrain = Pretraining([str(o) for o in pre.get("overrides") or []], str(pre.get("launch") or ""), bool(pre.get("per_seed", False)))
    out = Path(doc.get("output") or f"work_dirs/bench/{doc.get('name', path.stem)}").resolve()
    return Suite(doc.get("name", path.stem), out, ckpts, tasks, seeds, doc.get("baseline"), doc.get("references", True), launch,
                 pretrain, path.resolve())
