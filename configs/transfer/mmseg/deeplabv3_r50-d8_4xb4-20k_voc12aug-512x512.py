# DeepLabV3 (ASPP head) on the VOC12aug protocol, torchvision-style R50-D8 backbone. No anchor publishes SSL
# numbers for it; rows from it are labelled with this protocol name.
_base_ = ["fcn_r50-d8_4xb4-20k_voc12aug-512x512.py"]
model = dict(decode_head=dict(_delete_=True, type="ASPPHead", in_channels=2048, in_index=3, channels=512, dilations=(1, 12, 24, 36),
                              dropout_ratio=0.1, num_classes=21, norm_cfg={{_base_.norm_cfg}}, align_corners=False,
                              loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)))
protocol = dict(kind="standard", name="VOC12aug DeepLabV3 R50-D8 512x512 20k", world_size=4)
