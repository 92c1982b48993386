#!/usr/bin/env python
"""One entry point for every transfer task.

    python tools/run_transfer.py --task TASK --weights W [task options]

Tasks:
    knn            cosine kNN (k = 20, 200; T = 0.07) on pooled features       (transfer/classification)
    linear_cls     frozen-backbone linear probe, MoCo protocol or the paper's presets
    colour_probe   how much colour information the features keep (the paper's Sec. 5.2 analysis)
                   (knn, linear_cls, colour_probe: --stage 1..4 probes layer1..layer4 features)
    voc_det        VOC07+12 Faster R-CNN R50-C4 24k (MoCo protocol; paper and demo presets)  (detectron2)
    coco_det       COCO Mask R-CNN R50-C4/FPN 1x/2x, box AP                                (detectron2)
    coco_instseg   COCO Mask R-CNN R50-C4/FPN 1x/2x, box and mask AP                        (detectron2)
    voc_seg        VOC12aug FCN R50-D8 512x512 20k (mmselfsup protocol; DeepLabV3, demo)    (mmsegmentation)
    cityscapes_seg Cityscapes FCN R50-D8 769x769 40k                                        (mmsegmentation)
W may be a raw pretraining checkpoint (any supported layout), a converted backbone or a torchvision
state_dict; `random` gives a randomly initialised baseline. `--task TASK --help` lists a task's options.
Each run writes metrics.json, load_report.json and its resolved config into --output.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = {
    "knn": "transfer.classification.run",
    "linear_cls": "transfer.classification.run",
    "colour_probe": "transfer.classification.run",
    "voc_det": "transfer.detectron2.train_net",
    "coco_det": "transfer.detectron2.train_net",
    "coco_instseg": "transfer.detectron2.train_net",
    "voc_seg": "transfer.segmentation.run",
    "cityscapes_seg": "transfer.segmentation.run",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--task" not in argv or argv.index("--task") + 1 >= len(argv):
        print(__doc__)
        return 0 if ("-h" in argv or "--help" in argv) else 2
    i = argv.index("--task")
    task = argv[i + 1]
    rest = argv[:i] + argv[i + 2:]
    if task not in TASKS:
        print(f"error: unknown task {task!r}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(TASKS[task]).main(task, rest)


if __name__ == "__main__":
    sys.exit(main())
