"""`Res5ROIHeadsExtraNorm`: the C4 ROI head with a BN after res5, as in MoCo's detection protocol.

A self-supervised backbone's res5 features are not calibrated for the freshly initialised box
predictor; normalising them after the res5 block (MoCo, Sec. 4.2) makes fine-tuning stable.
"""
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5ROIHeads whose res5 stage ends in `cfg.MODEL.RESNETS.NORM` over its output channels."""

    @classmethod
    def _build_res5_block(cls, cfg):
        res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels
