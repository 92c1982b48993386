# Cityscapes fine (leftImg8bit/, gtFine/ with *_labelTrainIds.png from cityscapesscripts), 769x769 crops
# from images resized into (2049, 1025) x [0.5, 2.0]; sliding-window test (769 crops, stride 513).
dataset_type = "CityscapesDataset"
data_root = "data/cityscapes"
crop_size = (769, 769)
img_scale = (2049, 1025)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=True, sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                                     data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train")))
val_dataloader = dict(batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline,
                                   data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val")))
test_dataloader = val_dataloader
val_evaluator = dict(type="PerClassIoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
