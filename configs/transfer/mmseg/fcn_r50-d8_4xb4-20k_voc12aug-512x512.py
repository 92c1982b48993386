# mmselfsup's VOC12aug segmentation benchmark (anchors §2.4): FCN R50-D8, 512x512, 4 GPUs x 4, 20k iterations,
# mIoU every 2k. The default of `--task voc_seg`.
_base_ = ["_base_/fcn_r50-d8.py", "_base_/voc12aug_512.py", "_base_/runtime.py"]
model = dict(data_preprocessor=dict(size=(512, 512)))
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=20000, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=20000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
protocol = dict(kind="standard", name="mmselfsup VOC12aug FCN R50-D8 512x512 20k", world_size=4)
