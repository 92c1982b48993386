"""Running an mmseg config through mmengine's Runner, reading every checkpoint safely, writing atomically.

mmengine 0.10.7 reads local checkpoints with a bare torch.load; under torch >= 2.6 (weights_only by
default) its own resume checkpoints then fail. The local loader is replaced by one that uses the
project's restricted unpickler (`transfer.safe_pickle`): resume works, arbitrary objects still fail.
"""
from __future__ import annotations

import re
from pathlib import Path

from mmengine.dist import master_only
from mmengine.runner import CheckpointLoader, Runner

from pretrain.runs.files import replace_atomically
from pretrain.runs.preempt import Preemption

from ..safe_pickle import safe_load


class AtomicCheckpointRunner(Runner):
    """mmengine's Runner whose checkpoints (periodic `iter_N.pth`, best) appear atomically: written to a
    temporary file in the same folder, fsynced, renamed. A kill mid-write leaves no truncated file."""

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if not Path(out_dir).is_dir():  # a remote backend: mmengine's own writer
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)
        replace_atomically(Path(out_dir) / filename, lambda tmp: super(AtomicCheckpointRunner, self).save_checkpoint(
            out_dir, tmp.name, *args, **kwargs))


@CheckpointLoader.register_scheme(prefixes="", force=True)
def _load_local(filename: str, map_location=None):
    """mmengine's loader for local paths, through the restricted unpickler."""
    if not Path(filename).is_file():
        raise FileNotFoundError(f"{filename} is not a checkpoint file")
    return safe_load(filename, map_location=map_location or "cpu")


def run(cfg, eval_only: bool):
    """(last validation metrics or None on non-main ranks, load report, resumed?, {"checkpoint", "iteration"}
    that --eval-only evaluated)."""
    from mmengine.dist import is_main_process

    from . import hooks  # noqa: F401  registers PerClassIoUMetric and the hooks

    evaluated = {}
    if eval_only:
        cfg.load_from = str(_last_checkpoint(cfg.work_dir))
        cfg.resume = False
    runner = AtomicCheckpointRunner.from_cfg(cfg)
    if eval_only:
        metrics = runner.test()
        evaluated = {"checkpoint": cfg.load_from, "iteration": _iteration_of(cfg.load_from)}
    else:
        with Preemption() as runner.preemption:  # read by hooks.PreemptionHook
            runner.train()
        metrics = getattr(runner, "last_metrics", None)
    resumed = eval_only or getattr(runner, "start_iter", 0) > 0
    if not is_main_process():
        return None, None, resumed, evaluated
    return metrics or {}, getattr(runner, "load_report", None), resumed, evaluated


def _iteration_of(checkpoint: str) -> int | None:
    """The training iteration of an mmengine checkpoint named `iter_N.pth` (None for other names)."""
    m = re.fullmatch(r"iter_(\d+)\.pth", Path(checkpoint).name)
    return int(m.group(1)) if m else None


def _last_checkpoint(work_dir: str):
    marker = Path(work_dir) / "last_checkpoint"
    if not marker.is_file():
        raise FileNotFoundError(f"--eval-only: {marker} not found; train the run first")
    return Path(marker.read_text().strip())
