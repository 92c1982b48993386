"""mmengine pieces the segmentation runs add: a metric with per-class IoU, the backbone load report,
the last validation result kept for metrics.json, and a checkpoint before stopping for a preemption signal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import HOOKS, METRICS

from pretrain.runs.files import replace_atomically, write_json
from pretrain.runs.preempt import Preempted, agreed_signal


@METRICS.register_module(force=True)
class PerClassIoUMetric(IoUMetric):
    """mmseg's IoUMetric (mIoU, mAcc, aAcc in %) plus `IoU.<class>` for every class (NaN when a class is
    neither in the labels nor in the predictions)."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = super().compute_metrics(results)
        inter = sum(r[0] for r in results).double()
        union = sum(r[1] for r in results).double()
        iou = torch.where(union > 0, inter / union.clamp(min=1) * 100, torch.full_like(union, float("nan")))
        metrics.update({f"IoU.{name}": float(v) for name, v in zip(self.dataset_meta["classes"], iou.tolist())})
        return metrics


@HOOKS.register_module(force=True)
class BackboneLoadHook(Hook):
    """Before training from iteration 0, compares every backbone tensor with the user's checkpoint (read
    again from the source, not from the file handed to mmengine): all equal or the run stops, naming the
    keys. The report lands in `runner.load_report`."""

    priority = "VERY_HIGH"

    def __init__(self, weights: str | None):
        self.weights = weights

    def before_train(self, runner) -> None:
        from ..weights import extract_backbone

        runner.load_report = None
        if not self.weights or runner.iter > 0:
            return
        src = extract_backbone(self.weights).state_dict
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        have = {k: v for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
        src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
        missing = sorted(set(have) - set(src))
        unused = sorted(set(src) - set(have))
        differ = sorted(k for k in set(have) & set(src)
                        if have[k].shape != src[k].shape or not np.array_equal(have[k].cpu().numpy(), src[k].numpy()))
        runner.load_report = {"backbone_tensors": len(have), "verified_identical": len(have) - len(missing) - len(differ),
                              "missing": missing, "unexpected": unused, "not_identical": differ,
                              "ok": not (missing or unused or differ)}
        if is_main_process():  # written now, so a resumed run still has the report of its start
            write_json(Path(runner.work_dir) / "load_report.json", runner.load_report)
        if not runner.load_report["ok"]:
            raise RuntimeError(f"{self.weights}: the backbone did not load completely: missing {missing[:5]}, "
                               f"unexpected {unused[:5]}, not identical {differ[:5]}")


@HOOKS.register_module(force=True)
class LastMetricsHook(Hook):
    """Keeps the metrics of the latest validation in `runner.last_metrics`, and the iteration training
    started at in `runner.start_iter` (> 0: the run resumed from a checkpoint)."""

    priority = "LOW"

    def before_train(self, runner) -> None:
        runner.start_iter = runner.iter

    def after_val_epoch(self, runner, metrics=None) -> None:
        runner.last_metrics = dict(metrics or {})


@HOOKS.register_module(force=True)
class PreemptionHook(Hook):
    """SIGTERM/SIGUSR1/SIGUSR2 (`pretrain.runs.preempt`, noted by `runner.preemption`, which `engine.run` holds): after
    the current iteration, agreed by every process (checked every `every` iterations where there are several),
    write `iter_<n>.pth` and `last_checkpoint` as the checkpoint hook does, and stop with `Preempted`; the rerun
    resumes from it."""

    priority = "LOWEST"

    def __init__(self, every: int = 10):
        self.every = every

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if get_world_size() > 1 and done % self.every:
            return
        signum = agreed_signal(runner.preemption.signum)
        if signum is None:
            return
        name = f"iter_{done}.pth"
        runner.save_checkpoint(runner.work_dir, name, by_epoch=False)
        path = Path(runner.work_dir) / name
        if is_main_process():
            replace_atomically(Path(runner.work_dir) / "last_checkpoint", lambda tmp: tmp.write_text(str(path)))
        raise Preempted(signum, f"{path} at iteration {done}")
