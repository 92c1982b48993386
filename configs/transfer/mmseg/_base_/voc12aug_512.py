# PASCAL VOC 2012 + SBD aug (VOCdevkit/VOC2012 with SegmentationClassAug and ImageSets/Segmentation/aug.txt),
# 512x512 crops from images resized into (2048, 512) x [0.5, 2.0]; single-scale whole-image test.
dataset_type = "PascalVOCDataset"
data_root = "data/VOCdevkit/VOC2012"
crop_size = (512, 512)
img_scale = (2048, 512)
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
_train = dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
              ann_file="ImageSets/Segmentation/train.txt", pipeline=train_pipeline)
_aug = dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassAug"),
            ann_file="ImageSets/Segmentation/aug.txt", pipeline=train_pipeline)
train_dataloader = dict(batch_size=4, num_workers=4, persistent_workers=True, sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(type="ConcatDataset", datasets=[_train, _aug]))
val_dataloader = dict(batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type=dataset_type, data_root=data_root,
                                   data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
                                   ann_file="ImageSets/Segmentation/val.txt", pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="PerClassIoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
