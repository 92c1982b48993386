"""Run a benchmark suite cell by cell and write the comparison report.

    python -m benchmarks.run SUITE.yaml [--report-only] [--scheduler local|slurm|submitit-local] [--dry-run]

Each cell (checkpoint, task, seed) runs `tools/run_transfer.py` in its own folder
`<output>/cells/<checkpoint>/<task>/s<seed>/` and is finished when its run recorded (run.json) the inputs the
suite gives it now: a restarted suite skips finished cells (and a cell's own run resumes from its last
checkpoint); a cell or pretraining that finished with other inputs (another checkpoint file, config,
overrides or task arguments) is deleted and run again, and the report never shows it. A failing cell is
recorded in failed.json with its error and the others go on; a task whose engine is not installed is
recorded as skipped with the reason. A row given as a pretraining `config` is first pretrained, one
pretraining cell per config (and seed with `pretrain.per_seed`) in `<output>/pretrain/<row>[/s<seed>]/`,
finished when its pretrain_summary.json reports the whole schedule; a killed pretraining resumes from its
last.pth; if it fails, its transfer cells are marked failed and the other rows go on. A preemption signal
(SIGTERM, SIGUSR1/2) goes on to the running cell, which checkpoints; the runner then stops (exit 75) and the
same command resumes. With `--scheduler slurm` every unfinished pretraining and cell becomes a job submitted
through submitit (`submit`: logs in the cell's folder, a config row's cells after its pretraining, requeued
on preemption); run `--report-only` once they are done.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from pretrain.runs.cli import guarded
from pretrain.runs.preempt import EXIT_PREEMPTED

from .cells import cell_command, pretrain_command, run_cell, run_pretrain_cell
from .report import write_report
from .submit import parameters, submit
from .suite import Suite, SuiteError, load_suite


def clear_stale(suite: Suite, dry_run: bool) -> None:
    """A pretraining or cell that finished with other inputs than the suite asks for now (another checkpoint
    file, config, overrides or task arguments) is deleted, so that it runs again; the differences are printed."""
    for kind, folder, (state, diff) in (
            [("pretraining", suite.pretrain_dir(c, ps), suite.pretrain_state(c, ps)) for c in suite.checkpoints
             for ps in suite.pretrainings(c)]
            + [("cell", suite.cell_dir(*c), suite.cell_state(*c)) for c in suite.cells()]):
        if state == "stale":
            print(f"[bench] {kind} {folder}: finished with other inputs than the suite now gives; "
                  + ("it would run again" if dry_run else "running it again") + "".join(f"\n    {d}" for d in diff[:8]))
            if not dry_run:
                shutil.rmtree(folder)


def run_here(suite: Suite, todo) -> str | None:
    """Run row by row, here: its pretraining(s), then its cells. Returns the pretraining or cell that stopped for
    a preemption signal (after its checkpoint), None when everything ran."""
    work = []
    for c in suite.checkpoints:
        work += [("pretrain", c, ps) for ps in suite.pretrainings(c) if suite.pretrain_state(c, ps)[0] != "done"]
        work += [("cell", *t) for t in todo if t[0] is c]
    bar = tqdm(work, desc="cells", unit="cell", dynamic_ncols=True)
    for kind, ckpt, *rest in bar:
        t0 = time.time()
        if kind == "pretrain":
            what = f"{ckpt.name} / pretraining" + ("" if rest[0] is None else f" / seed {rest[0]}")
            bar.set_postfix_str(what)
            status = run_pretrain_cell(suite, ckpt, rest[0])
            where = suite.pretrain_dir(ckpt, rest[0])
        else:
            task, seed = rest
            what = f"{ckpt.name} / {task} / seed {seed}"
            bar.set_postfix_str(what)
            status = run_cell(suite, ckpt, task, seed)
            where = suite.cell_dir(ckpt, task, seed)
        tqdm.write(f"[bench] {what}: {status} ({time.time() - t0:.0f} s)" + (f" -> {where / 'failed.json'}" if status == "failed" else ""))
        if status == "preempted":
            return what
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path)
    p.add_argument("--report-only", action="store_true", help="only aggregate the finished cells")
    p.add_argument("--scheduler", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: one after the other here; slurm: a job each through submitit; submitit-local: the same "
                   "jobs as processes here")
    p.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE", help="submitit parameters of every job, e.g. "
                   "slurm_partition=dev gpus_per_node=8 tasks_per_node=1 cpus_per_task=10 timeout_min=4320")
    p.add_argument("--dry-run", action="store_true", help="list the cells to run (or to submit), run nothing")
    args = p.parse_args(argv)
    return guarded(lambda: _main(args), SuiteError, resume_hint="rerun the same command: finished cells are kept")


def _main(args) -> int:
    try:
        suite = load_suite(args.suite)
    except (SuiteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = suite.cells()
    if not args.report_only:
        clear_stale(suite, args.dry_run)
    todo = [c for c in cells if suite.cell_state(*c)[0] != "done"]
    pre = [(c, ps) for c in suite.checkpoints for ps in suite.pretrainings(c)]
    pre_todo = sum(suite.pretrain_state(c, ps)[0] != "done" for c, ps in pre)
    print(f"[bench] {suite.name}: {len(suite.checkpoints)} checkpoints x {len(suite.tasks)} tasks x {len(suite.seeds)} seeds "
          f"= {len(cells)} cells, {len(cells) - len(todo)} finished, {len(todo)} to run"
          + (f"; {len(pre)} pretrainings, {pre_todo} to run" if pre else "") + f" -> {suite.output}")
    if not args.report_only:
        if args.scheduler != "local":
            cluster = "slurm" if args.scheduler == "slurm" else "local"
            jobs = submit(suite, todo, cluster, parameters(args.slurm), args.dry_run)
            if cluster == "slurm" or args.dry_run:
                print(f"[bench] {len(jobs)} jobs" + ("" if args.dry_run else " submitted; run --report-only once they are done"))
                return 0
            for job, sub in jobs:
                try:
                    status = sub.result()
                except Exception:  # the job's error is in its submitit log
                    status = "failed"
                print(f"[bench] {job}: {status} (logs in {Path(sub.paths.folder)})")
        elif args.dry_run:
            for c, ps in pre:
                print("  " + shlex.join(pretrain_command(suite, c, ps)))
            for c in todo:
                print("  " + shlex.join(cell_command(suite, *c)))
            return 0
        elif (stopped := run_here(suite, todo)) is not None:
            print(f"[bench] stopped for a signal; {stopped} wrote its checkpoint: rerun the same command to resume",
                  file=sys.stderr)
            return EXIT_PREEMPTED
    report = write_report(suite)
    print(f"[bench] report: {report}")
    statuses = [suite.cell_state(*c)[0] for c in cells]
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
