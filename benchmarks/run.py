"""Run a benchmark suite cell by cell and write the comparison report.

    python -m benchmarks.run SUITE.yaml [--report-only] [--scheduler local|slurm] [--dry-run]

Each cell (checkpoint, task, seed) runs `tools/run_transfer.py` in its own folder
`<output>/cells/<checkpoint>/<task>/s<seed>/` and is finished when its metrics.json exists: a restarted
suite skips finished cells (and a cell's own run resumes from its last checkpoint). A failing cell is
recorded in failed.json with its error and the others go on; a task whose engine is not installed is
recorded as skipped with the reason. With `--scheduler slurm` every unfinished cell becomes an sbatch
job (scripts under <output>/slurm/); run `--report-only` once they are done.
"""
from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .report import write_report
from .suite import ENGINES, Suite, SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
INSTALL = {"detectron2": "detectron2 is not installed (install it by its official instructions; see README)",
           "mmseg": "mmsegmentation is not installed (run `make setup`)"}


def cell_status(folder: Path) -> str:
    if (folder / "metrics.json").is_file():
        return "done"
    if (folder / "skipped.json").is_file():
        return "skipped"
    if (folder / "failed.json").is_file():
        return "failed"
    return "todo"


def cell_command(suite: Suite, ckpt, task: str, seed: int) -> list[str]:
    launcher = shlex.split(suite.launch.get(task) or "") or [sys.executable]
    return [*launcher, str(ROOT / "tools/run_transfer.py"), "--task", task, "--weights", ckpt.path, "--seed", str(seed),
            "--output", str(suite.cell_dir(ckpt, task, seed)), *suite.tasks[task]]


def _write(path: Path, obj) -> None:
    from transfer.common import write_json

    write_json(path, obj)


def run_cell(suite: Suite, ckpt, task: str, seed: int) -> str:
    """Run one cell to completion; returns its final status."""
    folder = suite.cell_dir(ckpt, task, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    engine = ENGINES.get(task)
    if engine and importlib.util.find_spec(engine) is None:
        _write(folder / "skipped.json", {"task": task, "reason": INSTALL[engine]})
        return "skipped"
    (folder / "skipped.json").unlink(missing_ok=True)
    cmd = cell_command(suite, ckpt, task, seed)
    t0 = time.time()
    with open(folder / "cell.log", "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc == 0 and (folder / "metrics.json").is_file():
        return "done"
    tail = (folder / "cell.log").read_text(errors="replace").splitlines()[-15:]
    error = next((line for line in reversed(tail) if "error" in line.lower()), tail[-1] if tail else "no output")
    _write(folder / "failed.json", {"task": task, "checkpoint": ckpt.name, "seed": seed, "returncode": rc, "error": error.strip(),
                                    "log_tail": tail, "seconds": round(time.time() - t0, 1), "command": shlex.join(cmd)})
    return "failed"


def submit_slurm(suite: Suite, cells, sbatch_args: str, dry_run: bool) -> None:
    """One sbatch script per unfinished cell; each job writes the same cell folder as a local run."""
    folder = suite.output / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    for ckpt, task, seed in cells:
        cell = suite.cell_dir(ckpt, task, seed)
        script = folder / f"{ckpt.slug}__{task}__s{seed}.sh"
        script.write_text("#!/bin/bash\n" f"#SBATCH --job-name={task}-{ckpt.slug}-s{seed}\n" f"#SBATCH --output={cell}/slurm-%j.log\n"
                          f"{sbatch_args and '#SBATCH ' + sbatch_args}\n" f"mkdir -p {shlex.quote(str(cell))}\n"
                          f"cd {shlex.quote(str(ROOT))} && {shlex.join(cell_command(suite, ckpt, task, seed))}\n")
        if dry_run or shutil.which("sbatch") is None:
            print(f"[slurm] wrote {script}" + ("" if dry_run else " (sbatch not found: submit it yourself)"))
        else:
            out = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
            print(f"[slurm] {script.name}: {out.stdout.strip() or out.stderr.strip()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path)
    p.add_argument("--report-only", action="store_true", help="only aggregate the finished cells")
    p.add_argument("--scheduler", choices=["local", "slurm"], default="local")
    p.add_argument("--sbatch-args", default="", help="extra #SBATCH line for --scheduler slurm, e.g. '--gres=gpu:8 -p dev'")
    p.add_argument("--dry-run", action="store_true", help="list (slurm: write) the cells to run, run nothing")
    args = p.parse_args(argv)
    try:
        suite = load_suite(args.suite)
    except (SuiteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = suite.cells()
    todo = [c for c in cells if cell_status(suite.cell_dir(*c)) != "done"]
    print(f"[bench] {suite.name}: {len(suite.checkpoints)} checkpoints x {len(suite.tasks)} tasks x {len(suite.seeds)} seeds "
          f"= {len(cells)} cells, {len(cells) - len(todo)} finished, {len(todo)} to run -> {suite.output}")
    if not args.report_only:
        if args.scheduler == "slurm":
            submit_slurm(suite, todo, args.sbatch_args, args.dry_run)
            return 0
        if args.dry_run:
            for c in todo:
                print("  " + shlex.join(cell_command(suite, *c)))
            return 0
        bar = tqdm(todo, desc="cells", unit="cell", dynamic_ncols=True)
        for ckpt, task, seed in bar:
            bar.set_postfix_str(f"{ckpt.name} / {task} / seed {seed}")
            t0 = time.time()
            status = run_cell(suite, ckpt, task, seed)
            tqdm.write(f"[bench] {ckpt.name} / {task} / seed {seed}: {status} ({time.time() - t0:.0f} s)"
                       + (f" -> {suite.cell_dir(ckpt, task, seed) / 'failed.json'}" if status == "failed" else ""))
    report = write_report(suite)
    print(f"[bench] report: {report}")
    statuses = [cell_status(suite.cell_dir(*c)) for c in cells]
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
