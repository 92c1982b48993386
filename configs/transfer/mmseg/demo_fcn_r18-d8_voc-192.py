# DEMO protocol (not comparable with any published number): FCN R18-D8 on the generated VOC segmentation world
# (VOC2012/SegmentationClass, train.txt only), 160 px crops, batch 4, a short schedule; trains on a CPU in minutes.
_base_ = ["_base_/fcn_r50-d8.py", "_base_/voc12aug_512.py", "_base_/runtime.py"]
crop_size = (160, 160)
model = dict(data_preprocessor=dict(size=crop_size),
             backbone=dict(depth=18),
             decode_head=dict(in_channels=512, channels=128),
             auxiliary_head=dict(in_channels=256, channels=64))
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(384, 192), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(384, 192), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(num_workers=2, dataset=dict(_delete_=True, type="PascalVOCDataset", data_root="data/VOC2012",
                        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
                        ann_file="ImageSets/Segmentation/train.txt", pipeline=train_pipeline))
val_dataloader = dict(num_workers=2, dataset=dict(data_root="data/VOC2012", pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=80, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=80, val_interval=80)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=40))
protocol = dict(kind="demo", name="demo: FCN R18-D8, 160 px crops, generated VOC segmentation world", world_size=1)
