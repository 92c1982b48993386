"""Views written with torchvision's functional ops from a recorded parameter vector: the reference
that the project's augmentations are checked against (tests) and the per-image path they replaced
(`augment_throughput`: the loader's cost before the batched photometric path).

`torchvision_view(img, v, size)`: crop + resize, flip, rotate, colour jitter in the recorded order,
blur (kernel size//20*2+1), grayscale, solarize, normalisation, on uint8 (rounding after every op,
as torchvision does on uint8 tensors) or, with as_float, on float images in [0, 1].
"""
from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD

JITTER = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation, 3: TF.adjust_hue}


def torchvision_view(img: torch.Tensor, v: torch.Tensor, size: int, as_float: bool = False) -> torch.Tensor:
    """uint8 image (3, H, W) and its view's parameters (PARAM_DIM,) -> normalised view (3, size, size)."""
    h, w = img.shape[-2:]
    p = v.tolist()
    if p[0]:
        x = TF.resized_crop(img, round(p[1] * h), round(p[2] * w), round(p[3] * h), round(p[4] * w), [size, size],
                            antialias=True)
    else:
        x = TF.resize(img, [size, size], antialias=True)
    if p[6]:
        x = TF.horizontal_flip(x)
    if as_float:
        x = TF.to_dtype(x, torch.float32, scale=True)
    if p[20]:
        x = TF.rotate(x, 90.0 * p[21])  # counter-clockwise; exact on square views
    if p[7]:
        for k in p[12:16]:
            x = JITTER[int(k)](x, p[8 + int(k)])
    if p[17]:
        k = size // 20 * 2 + 1
        x = TF.gaussian_blur(x, [k, k], [p[18], p[18]])
    if p[16]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if p[19]:
        x = TF.solarize(x, 128 / 255 if as_float else 128)
    return TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))
