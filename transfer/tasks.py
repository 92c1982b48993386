"""The transfer tasks, declared once: who runs each, which engine it needs, how reports title it, which
metrics it reports (and which the report shows), and which data check applies to its data.

`tools/run_transfer.py`, the benchmark suite, its report and `tools/check_data.py` read this table;
adding a task is one entry here plus its runner (a module with `main(task, argv)`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    runner: str                          # module with main(task, argv) -> exit code
    engine: str | None                   # module that must be importable (None: torch only)
    title: str                           # column group in reports
    columns: tuple[tuple[str, str], ...]  # (report column, dotted key in metrics.json's `metrics`); the first is the figure's
    data: str                            # `transfer.datacheck` kind of its data (tools/check_data.py --task)
    summary: str                         # one line for `run_transfer.py --help`

    def metric(self, metrics: dict, column: str) -> float:
        """The value of report column `column` in a metrics.json of this task (`transfer.result`)."""
        value = metrics["metrics"]
        for part in dict(self.columns)[column].split("."):
            value = value[part]
        return value


_CLS = "transfer.classification.run"
_D2 = "transfer.detectron2.train_net"
_SEG = "transfer.segmentation.run"
TASKS = {t.name: t for t in (
    Task("knn", _CLS, None, "kNN", (("top1", "top1"),), "cls", "cosine kNN (k = 20, 200; T = 0.07) on pooled features"),
    Task("linear_cls", _CLS, None, "linear", (("top1", "top1"),), "cls",
         "frozen-backbone linear probe, MoCo protocol or the paper's presets"),
    Task("colour_probe", _CLS, None, "colour probe", (("top1", "top1"),), "cls",
         "how much colour information the features keep (the paper's Sec. 5.2 analysis)"),
    Task("invariance", _CLS, None, "invariance", (("gray@L4", "matrix.layer4.gray.mean"), ("blur@L4", "matrix.layer4.blur.mean"),
                                                 ("flip@L4", "matrix.layer4.flip.mean"), ("jitter@L4", "matrix.layer4.jitter.mean")),
         "cls", "invariance map: per stage and augmentation type, how invariant the pooled features are"),
    Task("voc_det", _D2, "detectron2", "VOC07+12 det", (("AP50", "bbox.AP50"), ("AP", "bbox.AP"), ("AP75", "bbox.AP75")), "voc_det",
         "VOC07+12 Faster R-CNN R50-C4 24k (MoCo protocol; paper and demo presets)"),
    Task("coco_det", _D2, "detectron2", "COCO det", (("APbb", "bbox.AP"), ("APbb50", "bbox.AP50"), ("APbb75", "bbox.AP75")),
         "coco_det", "COCO Mask R-CNN R50-C4/FPN 1x/2x, box AP"),
    Task("coco_instseg", _D2, "detectron2", "COCO inst. seg", (("APbb", "bbox.AP"), ("APmk", "segm.AP")), "coco_instseg",
         "COCO Mask R-CNN R50-C4/FPN 1x/2x, box and mask AP"),
    Task("voc_seg", _SEG, "mmseg", "VOC12 seg", (("mIoU", "mIoU"),), "voc_seg",
         "VOC12aug FCN R50-D8 512x512 20k (mmselfsup protocol; DeepLabV3, demo)"),
    Task("cityscapes_seg", _SEG, "mmseg", "Cityscapes seg", (("mIoU", "mIoU"),), "cityscapes_seg",
         "Cityscapes FCN R50-D8 769x769 40k"),
)}


def task_of(column: str) -> str:
    """The task of a suite column (`knn@layer2` -> `knn`)."""
    return column.split("@", 1)[0]
