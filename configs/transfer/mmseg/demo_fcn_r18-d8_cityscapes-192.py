# DEMO protocol: FCN R18-D8 on the generated Cityscapes-layout world, 160 px crops, sliding-window test.
_base_ = ["demo_fcn_r18-d8_voc-192.py"]
model = dict(decode_head=dict(num_classes=19, align_corners=True), auxiliary_head=dict(num_classes=19, align_corners=True),
             test_cfg=dict(mode="slide", crop_size=(160, 160), stride=(107, 107)))
train_dataloader = dict(dataset=dict(_delete_=True, type="CityscapesDataset", data_root="data/cityscapes",
                        data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
                        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(_delete_=True, type="CityscapesDataset", data_root="data/cityscapes",
                      data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"), pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
protocol = dict(kind="demo", name="demo: FCN R18-D8, 160 px crops, generated Cityscapes world", world_size=1)
