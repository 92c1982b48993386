"""Augmentations that record their parameters, so a view can be replayed and its parameters embedded.

Every view is made by `AugPipeline.sample` (draw parameters) + `AugPipeline.apply` (deterministic
given the parameters): `geometric` (crop + resize, flip; uint8) then `photometric.photometric` (the
rest, batched tensor ops that the training device can also run over a whole batch). The parameters
of one view form a fixed-length float vector, laid out as `params.PARAM_SLICES` says.

Order of application (the authors' `augmentations/simsiam_aug.py`): crop (resize), flip, rotate,
colour jitter, blur, grayscale, solarize, normalisation. Blur before grayscale is the authors'
order (the original SimSiam applies grayscale first; the two differ only by rounding). Everything
after the crop is computed in float32 on [0, 1] images, without rounding to uint8 between ops.

A type that is switched off or not drawn records "not applied" with identity values
(jitter: factors (1, 1, 1, 0), as the authors embed them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pretrain.transforms.params import PARAM_DIM, PARAM_SLICES
from pretrain.transforms.photometric import photometric

AUG_TYPES = ("crop", "flip", "jitter", "gray", "blur", "solarize", "rotate")
_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    """A float32-representable draw from U(lo, hi), so a replay from the stored vector is exact."""
    return float(torch.empty(()).uniform_(lo, hi, generator=g))


def _bernoulli(g: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=g)) < p


@dataclass(frozen=True)
class AugPipeline:
    """One view's augmentation pipeline (the SimSiam/MoCo v2 "aug+" set, BYOL's with solarize).

    `types` lists the augmentation types that are switched on; the rest leave the image untouched.
    Without "crop" the whole image is resized to `size`.
    """

    size: int = 224
    types: tuple[str, ...] = ("crop", "flip", "jitter", "gray", "blur")
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    rotate_p: float = 0.5
    interpolation: str = "bilinear"  # the crop's resize: bilinear | bicubic
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        bad = set(self.types) - set(AUG_TYPES)
        if bad:
            raise ValueError(f"unknown augmentation types {sorted(bad)}; known: {AUG_TYPES}")
        if self.interpolation not in _MODES:
            raise ValueError(f"interpolation must be one of {sorted(_MODES)}, got {self.interpolation!r}")

    def sample(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        """Draw the parameters of one view of an image of size (height, width): vector (PARAM_DIM,)."""
        v = torch.zeros(PARAM_DIM)
        v[PARAM_SLICES["crop"]] = torch.tensor([0, 0, 0, 1, 1, 1.0])
        v[PARAM_SLICES["jitter"]] = torch.tensor([0, 1, 1, 1, 0, 0, 1, 2, 3.0])
        on = set(self.types)
        if "crop" in on:
            i, j, h, w = self._crop_box(height, width, g)
            v[PARAM_SLICES["crop"]] = torch.tensor([1, i / height, j / width, h / height, w / width, h * w / (height * width)])
        if "flip" in on:
            v[6] = float(_bernoulli(g, self.flip_p))
        if "jitter" in on and _bernoulli(g, self.jitter_p):
            b, c, s, h = self.jitter
            factors = [_uniform(g, max(0.0, 1 - b), 1 + b), _uniform(g, max(0.0, 1 - c), 1 + c),
                       _uniform(g, max(0.0, 1 - s), 1 + s), _uniform(g, -h, h)]
            order = torch.randperm(4, generator=g).float()
            v[PARAM_SLICES["jitter"]] = torch.cat([torch.tensor([1.0, *factors]), order])
        if "gray" in on:
            v[16] = float(_bernoulli(g, self.gray_p))
        if "blur" in on and _bernoulli(g, self.blur_p):
            v[17], v[18] = 1.0, _uniform(g, *self.blur_sigma)
        if "solarize" in on:
            v[19] = float(_bernoulli(g, self.solarize_p))
        if "rotate" in on and _bernoulli(g, self.rotate_p):
            v[20], v[21] = 1.0, float(torch.randint(0, 4, (), generator=g))
        return v

    def _crop_box(self, height: int, width: int, g: torch.Generator) -> tuple[int, int, int, int]:
        """RandomResizedCrop's box (top, left, h, w), drawn from `g`."""
        area = height * width
        log_r = torch.log(torch.tensor(self.crop_ratio))
        for _ in range(10):
            target = area * _uniform(g, *self.crop_scale)
            ratio = float(torch.exp(torch.empty(()).uniform_(float(log_r[0]), float(log_r[1]), generator=g)))
            w = int(round((target * ratio) ** 0.5))
            h = int(round((target / ratio) ** 0.5))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, (1,), generator=g))
                j = int(torch.randint(0, width - w + 1, (1,), generator=g))
                return i, j, h, w
        in_ratio = width / height  # fallback: central crop, as torchvision
        if in_ratio < min(self.crop_ratio):
            w, h = width, int(round(width / min(self.crop_ratio)))
        elif in_ratio > max(self.crop_ratio):
            h, w = height, int(round(height * max(self.crop_ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def geometric(self, img: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The crop + resize and flip of view `v` (the loader's share). img: (3, H, W) uint8 -> (3, size, size) uint8."""
        height, width = img.shape[-2:]
        p = v.tolist()
        if p[0]:
            i, j = round(p[1] * height), round(p[2] * width)
            h, w = round(p[3] * height), round(p[4] * width)
            img = F.resized_crop(img, i, j, h, w, [self.size, self.size], interpolation=_MODES[self.interpolation],
                                 antialias=True)
        else:
            img = F.resize(img, [self.size, self.size], interpolation=_MODES[self.interpolation], antialias=True)
        return F.horizontal_flip(img) if p[6] else img

    def apply(self, img: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Make the view that parameters `v` describe. img: (3, H, W) uint8 -> (3, size, size) float, normalized."""
        return photometric(self.geometric(img, v)[None], v[None], self.mean, self.std)[0]

    def __call__(self, img: torch.Tensor, g: torch.Generator, geometric_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(view, parameters (PARAM_DIM,)) of a uint8 image (3, H, W): the finished view (3, size, size)
        float, or with geometric_only its crop/resize/flip, uint8 (the rest: `photometric.DeviceAugment`)."""
        v = self.sample(img.shape[-2], img.shape[-1], g)
        return (self.geometric(img, v) if geometric_only else self.apply(img, v)), v
