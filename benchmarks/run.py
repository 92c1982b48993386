"""Run a benchmark suite cell by cell and write the comparison report.

    python -m benchmarks.run SUITE.yaml [--report-only] [--scheduler local|slurm] [--dry-run]

Each cell (checkpoint, task, seed) runs `tools/run_transfer.py` in its own folder
`<output>/cells/<checkpoint>/<task>/s<seed>/` and is finished when its run recorded (run.json) the inputs the
suite gives it now: a restarted suite skips finished cells (and a cell's own run resumes from its last
checkpoint); a cell or pretraining that finished with other inputs (another checkpoint file, config,
overrides or task arguments) is deleted and run again, and the report never shows it. A failing cell is
recorded in failed.json with its error and the others go on; a task whose engine is not installed is
recorded as skipped with the reason. A row given as a pretraining `config` is first pretrained, one
pretraining cell per config (and seed with `pretrain.per_seed`) in `<output>/pretrain/<row>[/s<seed>]/`,
finished when its pretrain_summary.json reports the whole schedule; a killed pretraining resumes from its
last.pth; if it fails, its transfer cells are marked failed and the other rows go on. With
`--scheduler slurm` every unfinished cell becomes an sbatch job (scripts under <output>/slurm/; transfer
jobs of a config row depend on its pretraining job); run `--report-only` once they are done.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from pretrain.cli import guarded
from transfer.tasks import TASKS, task_of

from .report import write_report
from .suite import Suite, SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
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
    return [*launcher(suite.launch.get(task) or ""), str(ROOT / "tools/run_transfer.py"), "--task", task_of(task),
            *suite.cell_args(ckpt, task, seed)]


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


def _write(path: Path, obj) -> None:
    from pretrain.files import write_json

    write_json(path, obj)


def _run_logged(cmd: list[str], folder: Path, log_name: str, record: dict, done) -> str:
    """Run `cmd` with its output appended to folder/log_name; "done" if it succeeds and done() holds,
    else "failed" with failed.json (the error line, the log's tail, the command)."""
    t0 = time.time()
    with open(folder / log_name, "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
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


def _sbatch(script: Path, depends: str | None, dry_run: bool) -> str | None:
    """Submit `script` (after job `depends`); returns the job id, or None when not submitted."""
    if dry_run or shutil.which("sbatch") is None:
        print(f"[slurm] wrote {script}" + (f" (after {depends})" if depends else "")
              + ("" if dry_run else " (sbatch not found: submit it yourself)"))
        return None
    cmd = ["sbatch", *([f"--dependency=afterok:{depends}"] if depends and depends.isdigit() else []), str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    print(f"[slurm] {script.name}: {out.stdout.strip() or out.stderr.strip()}")
    m = re.search(r"Submitted batch job (\d+)", out.stdout)
    return m.group(1) if m else None


def _script(path: Path, job: str, log: Path, sbatch_args: str, cmd: list[str]) -> Path:
    path.write_text("#!/bin/bash\n" f"#SBATCH --job-name={job}\n" f"#SBATCH --output={log}/slurm-%j.log\n"
                    f"{sbatch_args and '#SBATCH ' + sbatch_args}\n" f"mkdir -p {shlex.quote(str(log))}\n"
                    f"cd {shlex.quote(str(ROOT))} && {shlex.join(cmd)}\n")
    return path


def submit_slurm(suite: Suite, cells, sbatch_args: str, dry_run: bool) -> None:
    """One sbatch script per unfinished pretraining and cell; each job writes the same folder as a local run,
    and the cells of a config row wait for its pretraining job (--dependency=afterok)."""
    folder = suite.output / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    jobs: dict[tuple, str | None] = {}
    for ckpt in suite.checkpoints:
        for pseed in suite.pretrainings(ckpt):
            pdir = suite.pretrain_dir(ckpt, pseed)
            if suite.pretrain_state(ckpt, pseed)[0] == "done":
                continue
            tag = f"{ckpt.slug}" + ("" if pseed is None else f"__s{pseed}")
            script = _script(folder / f"pretrain__{tag}.sh", f"pretrain-{tag}", pdir, sbatch_args, pretrain_command(suite, ckpt, pseed))
            jobs[(ckpt.name, pseed)] = _sbatch(script, None, dry_run) or script.name
    for ckpt, task, seed in cells:
        cell = suite.cell_dir(ckpt, task, seed)
        script = _script(folder / f"{ckpt.slug}__{task.replace('@', '_')}__s{seed}.sh", f"{task}-{ckpt.slug}-s{seed}", cell,
                         sbatch_args, cell_command(suite, ckpt, task, seed))
        _sbatch(script, jobs.get((ckpt.name, seed if suite.pretrain.per_seed else None)), dry_run)


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path)
    p.add_argument("--report-only", action="store_true", help="only aggregate the finished cells")
    p.add_argument("--scheduler", choices=["local", "slurm"], default="local")
    p.add_argument("--sbatch-args", default="", help="extra #SBATCH line for --scheduler slurm, e.g. '--gres=gpu:8 -p dev'")
    p.add_argument("--dry-run", action="store_true", help="list (slurm: write) the cells to run, run nothing")
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
        if args.scheduler == "slurm":
            submit_slurm(suite, todo, args.sbatch_args, args.dry_run)
            return 0
        if args.dry_run:
            for c, ps in pre:
                print("  " + shlex.join(pretrain_command(suite, c, ps)))
            for c in todo:
                print("  " + shlex.join(cell_command(suite, *c)))
            return 0
        work = []  # row by row: its pretraining(s), then its cells
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
    report = write_report(suite)
    print(f"[bench] report: {report}")
    statuses = [suite.cell_state(*c)[0] for c in cells]
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
