"""`--scheduler slurm`: every unfinished pretraining and cell becomes a job submitted through submitit.

A job runs the local scheduler's own function (`cells.run_pretrain_cell` / `cells.run_cell`) on its node, with
its submitit logs in the folder it writes (`<cell>/submitit/`). Cells of a config row wait for their
pretraining (`--dependency=afterok`). On preemption or a coming time limit (submitit's USR2, SLURM's SIGTERM)
the run checkpoints and exits 75 (`pretrain.runs.preempt`); the job then asks submitit to requeue it
(`checkpoint` below), and the requeued job resumes the run from its checkpoint.

`--scheduler submitit-local` runs the same jobs as processes on this machine (submitit's local executor),
to try a suite's submission path before a cluster; it has no job dependencies, so the runner waits for a
row's pretraining before it submits the row's cells.
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import yaml

from .cells import run_cell, run_pretrain_cell
from .suite import Suite, SuiteError, load_suite

DEFAULTS = {"timeout_min": 24 * 60}  # submitit's own default is 5 minutes


class SuiteJob:
    """One pretraining (task None) or cell of the suite in `suite_file`, as submitit pickles and runs it."""

    def __init__(self, suite_file: str, checkpoint: str, task: str | None, seed: int | None):
        self.suite_file, self.checkpoint_name, self.task, self.seed = suite_file, checkpoint, task, seed

    def __call__(self) -> str:
        suite = load_suite(Path(self.suite_file))
        ckpt = next(c for c in suite.checkpoints if c.name == self.checkpoint_name)
        status = (run_pretrain_cell(suite, ckpt, self.seed) if self.task is None
                  else run_cell(suite, ckpt, self.task, self.seed))
        if status == "preempted":
            sig = _submitit_signal()
            requeue = signal.getsignal(sig)
            if callable(requeue):  # submitit's handler: calls self.checkpoint(), requeues the job (rank 0), exits
                requeue(sig, None)
        if status == "failed":
            raise RuntimeError(f"{self}: failed (see failed.json in its folder)")
        return status

    def checkpoint(self, *args, **kwargs):
        """submitit's requeue hook: the same job again; the run resumes from the checkpoint it just wrote."""
        import submitit

        return submitit.helpers.DelayedSubmission(SuiteJob(self.suite_file, self.checkpoint_name, self.task, self.seed))

    def __repr__(self) -> str:
        what = "pretraining" if self.task is None else self.task
        return f"{self.checkpoint_name} / {what}" + ("" if self.seed is None else f" / seed {self.seed}")


def _submitit_signal() -> int:
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def parameters(items: list[str]) -> dict:
    """`--slurm KEY=VALUE` items (submitit's AutoExecutor parameters, e.g. slurm_partition=dev gpus_per_node=8
    tasks_per_node=8 timeout_min=4320) as a dict, values read as YAML scalars, over `DEFAULTS`."""
    out = dict(DEFAULTS)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SuiteError(f"--slurm {item!r}: expected KEY=VALUE (a submitit parameter, e.g. slurm_partition=dev)")
        out[key] = yaml.safe_load(value)
    return out


def _executor(folder: Path, cluster: str, params: dict, name: str, after=None):
    import submitit

    ex = submitit.AutoExecutor(folder=folder / "submitit", cluster=cluster)
    extra = dict(params.pop("slurm_additional_parameters", {}) or {}) if cluster == "slurm" else {}
    if after is not None and cluster == "slurm":
        extra["dependency"] = f"afterok:{after.job_id}"
    try:
        ex.update_parameters(name=name, **params, **({"slurm_additional_parameters": extra} if extra else {}))
    except ValueError as e:
        raise SuiteError(f"--slurm: {e}") from None
    return ex


def submit(suite: Suite, cells, cluster: str, params: dict, dry_run: bool) -> list[tuple[SuiteJob, object]]:
    """Submit every unfinished pretraining, then its row's cells (after it); returns (job, submitit job) pairs.
    `cluster`: "slurm" or "local" (submitit's local executor)."""
    if cluster == "slurm" and not dry_run and shutil.which("sbatch") is None:
        raise SuiteError("--scheduler slurm submits through submitit, which needs SLURM's sbatch on this machine "
                         "(run it on a login node); --dry-run lists the jobs; --scheduler submitit-local runs them here")
    submitted: list[tuple[SuiteJob, object]] = []
    for ckpt in suite.checkpoints:
        before = {}
        for pseed in suite.pretrainings(ckpt):
            if suite.pretrain_state(ckpt, pseed)[0] == "done":
                continue
            job = SuiteJob(str(suite.path), ckpt.name, None, pseed)
            before[pseed] = _launch(job, suite.pretrain_dir(ckpt, pseed), cluster, params, None, dry_run)
            submitted.append((job, before[pseed]))
        if cluster == "local" and not dry_run:  # no dependencies there: the row's pretraining ends before its cells
            for j in before.values():
                j.wait()
        for c, task, seed in cells:
            if c is not ckpt:
                continue
            job = SuiteJob(str(suite.path), ckpt.name, task, seed)
            after = before.get(seed if suite.pretrain.per_seed else None)
            submitted.append((job, _launch(job, suite.cell_dir(ckpt, task, seed), cluster, params, after, dry_run)))
    return submitted


def _launch(job: SuiteJob, folder: Path, cluster: str, params: dict, after, dry_run: bool):
    if dry_run:
        print(f"[{cluster}] would submit {job} -> {folder}" + (f" (after {after})" if after else ""))
        return f"<{job}>"
    folder.mkdir(parents=True, exist_ok=True)
    name = str(job).replace(" / ", "-").replace(" ", "")
    sub = _executor(folder, cluster, dict(params), name, after).submit(job)
    print(f"[{cluster}] {job}: job {sub.job_id}" + (f" (after {after.job_id})" if after else "") + f", logs in {folder / 'submitit'}")
    return sub
