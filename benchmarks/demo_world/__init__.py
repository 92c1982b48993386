"""A seeded synthetic world of textured shapes, written in the real on-disk dataset layouts.

`render` draws classification images and multi-object scenes; `formats` writes them as
ImageFolder, VOC2007/2012 (detection XML and segmentation PNGs), COCO JSON and Cityscapes trees,
so that the readers used on ImageNet/VOC/COCO/Cityscapes read the demo world unchanged.
"""
from .formats import generate
from .render import VOC_CLASSES, WorldSpec

__all__ = ["VOC_CLASSES", "WorldSpec", "generate"]
