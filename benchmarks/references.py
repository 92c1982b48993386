"""Published reference rows (ResNet-50, ImageNet-1k pretraining) for the comparison tables.

Values and sources as collected in the project's anchors notes (MoCo README/paper, SimSiam Table 5,
mmselfsup model zoo). Each row states its protocol; a value measured with another protocol than its
column's (the MoCo linear probe, MoCo's detection recipe, mmselfsup's FCN) carries a note, printed as
a mark. The report prints them apart from measured rows and never mixes them into means or deltas. The paper (Zhang & Ma, CVPR 2022) published no numbers we
could verify, so it has no row yet.
"""

REFERENCES = [
    {"name": "supervised IN-1k", "source": "MoCo detection README; SimSiam Tab. 5", "protocol": "standard, R50",
     "values": {("voc_det", "AP50"): 81.3, ("voc_det", "AP"): 53.5, ("voc_det", "AP75"): 58.8,
                ("coco_det", "APbb"): 38.2, ("coco_instseg", "APbb"): 38.2, ("coco_instseg", "APmk"): 33.3,
                ("linear_cls", "top1"): 76.1},
     "notes": {("linear_cls", "top1"): "supervised end-to-end training (torchvision R50), not a linear probe"}},
    {"name": "random init", "source": "MoCo paper Tab. 2b; SimSiam Tab. 5", "protocol": "standard, R50",
     "values": {("voc_det", "AP50"): 60.2, ("voc_det", "AP"): 33.8, ("voc_det", "AP75"): 33.1,
                ("coco_det", "APbb"): 26.4, ("coco_instseg", "APbb"): 26.4, ("coco_instseg", "APmk"): 29.3}},
    {"name": "MoCo v2 200e", "source": "MoCo README; SimSiam Tab. 5; mmselfsup 0.x", "protocol": "standard, R50",
     "values": {("voc_det", "AP50"): 82.4, ("voc_det", "AP"): 57.0, ("voc_det", "AP75"): 63.6,
                ("coco_det", "APbb"): 39.2, ("coco_instseg", "APbb"): 39.2, ("coco_instseg", "APmk"): 34.3,
                ("voc_seg", "mIoU"): 67.55, ("linear_cls", "top1"): 67.5}},
    {"name": "SimSiam 200e (base)", "source": "SimSiam Tab. 4/5", "protocol": "standard, R50",
     "values": {("voc_det", "AP50"): 82.0, ("voc_det", "AP"): 56.4, ("voc_det", "AP75"): 62.8,
                ("coco_det", "APbb"): 37.9, ("coco_instseg", "APbb"): 37.9, ("coco_instseg", "APmk"): 33.2,
                ("linear_cls", "top1"): 70.0},
     "notes": {("linear_cls", "top1"): "SimSiam's linear probe (LARS, batch 4096, 90 ep), not MoCo's SGD lr-30 probe"}},
    {"name": "BYOL 200e", "source": "SimSiam Tab. 4/5 (repro); mmselfsup 0.x", "protocol": "standard, R50",
     "values": {("voc_det", "AP50"): 81.4, ("voc_det", "AP"): 55.3, ("voc_det", "AP75"): 61.1,
                ("coco_det", "APbb"): 37.9, ("coco_instseg", "APbb"): 37.9, ("coco_instseg", "APmk"): 33.2,
                ("voc_seg", "mIoU"): 67.16, ("linear_cls", "top1"): 70.6},
     "notes": {("linear_cls", "top1"): "SimSiam's linear probe (LARS, batch 4096, 90 ep), not MoCo's SGD lr-30 probe"}},
]
