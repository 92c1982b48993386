# mmselfsup's Cityscapes segmentation benchmark (anchors §2.4): FCN R50-D8, 769x769, align_corners, 4 GPUs x 2,
# 40k iterations, mIoU every 4k, sliding-window test. The default of `--task cityscapes_seg`.
_base_ = ["_base_/fcn_r50-d8.py", "_base_/cityscapes_769.py", "_base_/runtime.py"]
model = dict(data_preprocessor=dict(size=(769, 769)),
             decode_head=dict(num_classes=19, align_corners=True), auxiliary_head=dict(num_classes=19, align_corners=True),
             test_cfg=dict(mode="slide", crop_size=(769, 769), stride=(513, 513)))
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
protocol = dict(kind="standard", name="mmselfsup Cityscapes FCN R50-D8 769x769 40k", world_size=4)
