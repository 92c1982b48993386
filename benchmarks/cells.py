"""One pretraining or cell of a suite, run to its end: the command, its log, its status. The local scheduler calls
these in a loop; `submit`'s jobs call the same functions on the cluster's nodes.

A preemption signal that reaches the process running a cell goes on to the cell's run (`pretrain.runs.preempt`): the
run checkpoints and exits 75, and the cell's status is "preempted" (resumed by the next start, or by submitit's
requeue), not "failed".
"""
from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pretrain.config.shipped import CHECKOUT, in_checkout
from pretrain.runs.preempt import EXIT_PREEMPTED, Forwarding
from transfer.tasks import TASKS, task_of

from .suite import Suite

ROOT = CHECKOUT  # the project folder: cells run from it in a checkout
INSTALL = {"detectron2": "detectron2 is not installed (install it by its official instructions; see README)",
           "mmseg": "mmsegmentation is not installed (run `make setup`)"}


def launcher(command: str) -> list[str]:
    """A suite's launch command as argv ("" = this python). torchrun on one node without a rendezvous of its own
    gets --standalone: a free port, so that two jobs on one node do not collide on the default one."""
    argv = shlex.split(command) or [sys.executable]
    i = next((k + 1 for k, a in enumerate(argv) if a.endswith("torchrun") or a == "torch.distributed.run"), None)
    own = ("--standalone", "--rdzv-endpoint", "--rdzv_endpoint", "--master-port", "--master_port", "--nnodes")
    if i is not None and not any(a.split("=")[0] in own for a in argv):
        argv.insert(i, "--standalone")
    return argv


def pretrain_command(suite: Suite, ckpt, seed: int | None) -> list[str]:
    return [*launcher(suite.pretrain.launch), "-m", "pretrain.train", ckpt.config, *suite.pretrain_overrides(ckpt, seed)]


def cell_command(suite: Suite, ckpt, task: str, seed: int) -> list[str]:
    return [*launcher(suite.launch.get(task) or ""), "-m", "transfer.commands.run_transfer", "--task", task_of(task),
            *suite.cell_args(ckpt, task, seed)]


def _write(path: Path, obj) -> None:
    from pretrain.runs.files import write_json

    write_json(path, obj)


def _run_logged(cmd: list[str], folder: Path, log_name: str, record: dict, done) -> str:
    """Run `cmd` with its output appended to folder/log_name; "done" if it succeeds and done() holds, "preempted"
    if it stopped for a signal after its checkpoint, else "failed" with failed.json (the error line, the log's
    tail, the command)."""
    t0 = time.time()
    with open(folder / log_name, "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT if in_checkout() else None, stdout=log, stderr=subprocess.STDOUT)
        with Forwarding(proc):
            rc = proc.wait()
    if rc == EXIT_PREEMPTED:
        return "preempted"
    if rc == 0 and done():
        return "done"
    tail = (folder / log_name).read_text(errors="replace").splitlines()[-15:]
    error = next((line for line in reversed(tail) if "error" in line.lower()), tail[-1] if tail else "no output")
    _write(folder / "failed.json", {**record, "returncode": rc, "error": error.strip(), "log_tail": tail,
                                    "seconds": round(time.time() - t0, 1), "command": shlex.join(cmd)})
    return "failed"


def run_pretrain_cell(suite: Suite, ckpt, seed: int | None) -> str:
    """Pretrain a config row (resuming a stopped run) to the end of its schedule; returns its status."""
    folder = suite.pretrain_dir(ckpt, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    return _run_logged(pretrain_command(suite, ckpt, seed), folder, "pretrain.log",
                       {"checkpoint": ckpt.name, "config": ckpt.config, "seed": seed},
                       lambda: suite.pretrain_state(ckpt, seed)[0] == "done")


def run_cell(suite: Suite, ckpt, task: str, seed: int) -> str:
    """Run one cell to completion; returns its final status."""
    folder = suite.cell_dir(ckpt, task, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    engine = TASKS[task_of(task)].engine
    if engine and importlib.util.find_spec(engine) is None:
        _write(folder / "skipped.json", {"task": task, "reason": INSTALL[engine]})
        return "skipped"
    (folder / "skipped.json").unlink(missing_ok=True)
    record = {"task": task, "checkpoint": ckpt.name, "seed": seed}
    for pseed in suite.pretrainings(ckpt):
        pdir = suite.pretrain_dir(ckpt, pseed)
        if pseed in (None, seed) and suite.pretrain_state(ckpt, pseed)[0] != "done":
            _write(folder / "failed.json", {**record, "error": f"its pretraining did not finish (see {pdir})"})
            return "failed"
    return _run_logged(cell_command(suite, ckpt, task, seed), folder, "cell.log", record, lambda: (folder / "metrics.json").is_file())


