"""The transfer tasks, declared once: who runs each, which engine it needs, how reports title it, which
metrics it reports (and which the report shows), and which data check applies to its data.

`tools/run_transfer.py`, the runners (default preset, what a preset must read, what the evaluation must
return: `metric_groups`), the benchmark suite, its report and `tools/check_data.py` (`data` layout) read this
table; adding a task is one entry here plus its runner (a module with `main(task, argv)`).
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
    data: str                            # its data layout (`transfer.datacheck.LAYOUTS`; detectron2 dataset names start with it)
    summary: str                         # one line for `run_transfer.py --help`
    preset: str | None = None            # the engine runner's default preset (configs/transfer/<engine>/NAME)
    dataset_type: str | None = None      # the mmseg dataset type its presets read

    @property
    def metric_groups(self) -> tuple[str, ...]:
        """The top-level keys of `metrics` its columns read, in order: what its evaluation must return
        (("bbox",), ("bbox", "segm"), ("mIoU",), ...)."""
        return tuple(dict.fromkeys(key.split(".")[0] for _, key in self.columns))

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
    Task("voc_det", _D2, "detectron2", "VOC07+12 det", (("AP50", "bbox.AP50"), ("AP", "bbox.AP"), ("AP75", "bbox.AP75")), "voc",
         "VOC07+12 Faster R-CNN R50-C4 24k (MoCo protocol; paper and demo presets)", preset="pascal_voc_R_50_C4_24k_moco"),
    Task("coco_det", _D2, "detectron2", "COCO det", (("APbb", "bbox.AP"), ("APbb50", "bbox.AP50"), ("APbb75", "bbox.AP75")),
         "coco", "COCO Mask R-CNN R50-C4/FPN 1x/2x, box AP", preset="coco_R_50_C4_1x_moco"),
    Task("coco_instseg", _D2, "detectron2", "COCO inst. seg", (("APbb", "bbox.AP"), ("APmk", "segm.AP")), "coco",
         "COCO Mask R-CNN R50-C4/FPN 1x/2x, box and mask AP", preset="coco_R_50_C4_1x_moco"),
    Task("voc_seg", _SEG, "mmseg", "VOC12 seg", (("mIoU", "mIoU"),), "voc_masks",
         "VOC12aug FCN R50-D8 512x512 20k (mmselfsup protocol; DeepLabV3, demo)",
         preset="fcn_r50-d8_4xb4-20k_voc12aug-512x512", dataset_type="PascalVOCDataset"),
    Task("cityscapes_seg", _SEG, "mmseg", "Cityscapes seg", (("mIoU", "mIoU"),), "cityscapes",
         "Cityscapes FCN R50-D8 769x769 40k", preset="fcn_r50-d8_4xb2-40k_cityscapes-769x769", dataset_type="CityscapesDataset"),
)}


def task_of(column: str) -> str:
    """The task of a suite column (`knn@layer2` -> `knn`)."""
    return column.split("@", 1)[0]
