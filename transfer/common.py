"""What every transfer task shares: its run folder (identity checked before anything is written), its
identity and request (what decides the result; the result itself: `transfer.result`), and small value helpers."""
from __future__ import annotations

import math
from pathlib import Path

from pretrain.runs.folder import RunFolder, file_fingerprint, package_version

# command-line flags that say where and how a run executes, not what it computes (flag -> number of values)
SETTINGS_FLAGS = {"--output": 1, "--num-gpus": 1, "--num-machines": 1, "--machine-rank": 1, "--dist-url": 1, "--device": 1,
                  "--workers": 1, "--launcher": 1, "--eval-only": 0, "--overwrite": 0, "--no-resume": 0}
SYMBOLIC_WEIGHTS = ("", "random", "config")


def finite_or_none(x):
    """NaN/inf (e.g. COCO APl with no large objects, IoU of an absent class) -> None, so files stay strict JSON."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def weights_identity(weights: str):
    """What a `--weights` value means for a result: the symbolic values as they are, a file by its content."""
    if weights in SYMBOLIC_WEIGHTS or weights.startswith("detectron2://"):
        return weights or "random"
    return file_fingerprint(weights)


def request_identity(task: str, argv: list[str]) -> dict:
    """A transfer command line as a cache key: the task, its arguments grouped by option (the `--weights` value
    and every other argument naming an existing file by content), this package's version; `SETTINGS_FLAGS`
    left out. The benchmark runner compares it with the `request` a finished run recorded."""
    args: dict[str, list] = {}
    option, i = "(positional)", 0
    while i < len(argv):
        a = argv[i]
        if a in SETTINGS_FLAGS:
            option, i = "(positional)", i + 1 + SETTINGS_FLAGS[a]
            continue
        if a.startswith("--"):
            option = a
            args.setdefault(option, [])
        elif option == "--weights":
            args[option].append(weights_identity(a))
        else:
            args.setdefault(option, []).append(file_fingerprint(a) if Path(a).is_file() else a)
        i += 1
    return {"task": task, "args": args, "package": package_version()}


def run_folder(out: Path, task: str) -> RunFolder:
    return RunFolder(out, f"transfer:{task}", elsewhere="--output DIR", overwrite="--overwrite")


def transfer_identity(task: str, weights: str, seed: int, data: str | Path | None, **decides) -> dict:
    """The identity of a transfer run: task, weights (by content), seed, data folder (absolute), this
    package's version, and what else `decides` its result (the resolved protocol config, task options)."""
    return {"task": task, "weights": weights_identity(weights), "seed": seed,
            "data": None if data is None else str(Path(data).expanduser().resolve()), "package": package_version(), **decides}


def check_output(out: Path) -> Path:
    """`out` created (or found) as a writable folder; an OSError naming it and the reason otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to the output folder {out}: {e.strerror or e}; pass --output with a folder you can "
                      "write") from None
    return out


def start_state(folder: RunFolder, ident: dict, task: str, overwrite: bool, eval_only: bool | None = None,
                eval_weights: bool = False, speak: bool = True) -> str | None:
    """What a transfer command does in its folder: "new" (always under `overwrite`) or "resume"
    (`RunFolder.check`), or None when the run already finished with these inputs (said once when `speak`:
    nothing to do). `eval_only` (None: the runner has no --eval-only) re-evaluates a finished run; on a folder
    with no run it evaluates `--weights` as they are when `eval_weights` (the identity says so), else stops."""
    state = "new" if overwrite else folder.check(ident)
    if state == "new" and eval_only:
        if not eval_weights:
            raise FileNotFoundError(f"--eval-only: {folder.path} holds no run to evaluate; train it first (the same command "
                                    "without --eval-only)")
        ident["mode"] = "evaluation of --weights without fine-tuning"
        state = "new" if overwrite else folder.check(ident)
    if state == "finished" and not eval_only:
        if speak:
            again = "--overwrite runs it again" if eval_only is None else "--eval-only evaluates it again, --overwrite runs it again"
            print(f"[{task}] {folder.path}: already finished with these inputs ({folder.path / 'metrics.json'}); nothing to do "
                  f"({again})")
        return None
    return state
