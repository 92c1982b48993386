"""DefaultTrainer with the project's checkpointer, the VOC / COCO evaluators, and a checkpoint before stopping
for a preemption signal."""
from __future__ import annotations

import os
import weakref
from pathlib import Path

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

from pretrain.runs.preempt import Preempted, Preemption, agreed_signal

from .checkpoint import SafeCheckpointer


class PreemptionHook(hooks.HookBase):
    """SIGTERM/SIGUSR1/SIGUSR2 (`pretrain.preempt`): after the current iteration, agreed by every process (checked
    every `every` iterations where there are several), write `model_<iter>.pth` as the periodic checkpointer
    does and stop with `Preempted`; the rerun resumes from it (`resume_or_load`)."""

    def __init__(self, every: int = 10):
        self.every, self.preemption = every, Preemption()

    def before_train(self):
        self.preemption.__enter__()

    def after_train(self):
        self.preemption.__exit__()

    def after_step(self):
        it = self.trainer.iter
        if comm.get_world_size() > 1 and (it + 1) % self.every:
            return
        signum = agreed_signal(self.preemption.signum)
        if signum is None:
            return
        name = f"model_{it:07d}"
        self.trainer.checkpointer.save(name, iteration=it)
        raise Preempted(signum, f"{Path(self.trainer.cfg.OUTPUT_DIR) / name}.pth at iteration {it + 1}")


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.checkpointer = self.checkpointer_for(self._trainer.model, cfg, trainer=weakref.proxy(self))
        for h in self._hooks:
            if isinstance(h, hooks.PeriodicCheckpointer):
                h.checkpointer = self.checkpointer

    def build_hooks(self):
        return [*super().build_hooks(), PreemptionHook()]

    def build_writers(self):
        """detectron2's writers, but the training log goes to events.jsonl: metrics.json is the result file."""
        out = self.cfg.OUTPUT_DIR
        return [CommonMetricPrinter(self.max_iter), JSONWriter(os.path.join(out, "events.jsonl")), TensorboardXWriter(out)]

    @staticmethod
    def checkpointer_for(model, cfg, **checkpointables):
        return SafeCheckpointer(model, cfg.OUTPUT_DIR, **checkpointables)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("evaluator_type") == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        if meta.get("evaluator_type") == "coco" or meta.get("json_file"):
            out = output_folder or str(Path(cfg.OUTPUT_DIR) / "inference")
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            return COCOEvaluator(dataset_name, tasks=tasks, distributed=True, output_dir=out)
        raise ValueError(f"no evaluator for dataset {dataset_name!r} (evaluator_type {meta.get('evaluator_type')!r})")
