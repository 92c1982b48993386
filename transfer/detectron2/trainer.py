"""DefaultTrainer with the project's checkpointer and the VOC / COCO evaluators."""
from __future__ import annotations

import os
import weakref
from pathlib import Path

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

from .checkpoint import SafeCheckpointer


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.checkpointer = self.checkpointer_for(self._trainer.model, cfg, trainer=weakref.proxy(self))
        for h in self._hooks:
            if isinstance(h, hooks.PeriodicCheckpointer):
                h.checkpointer = self.checkpointer

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
