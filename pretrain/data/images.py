"""One image reader for every dataset in the project (pretraining, the classification probes, the invariance
map, the colour probe, the data check): any file PIL can open becomes the 8-bit RGB picture a person would see.

The file's content decides its format, not its name (ImageNet holds a PNG named `.JPEG`). By mode:
    RGB, L, 1, YCbCr, LAB, HSV   converted by PIL (greyscale repeated over the three channels)
    CMYK                         R = 255 (1 - C/255)(1 - K/255), the same for G (M) and B (Y)
    I;16*                        16-bit greyscale: v * 255 / 65535, rounded
    I                            32-bit integer greyscale: 16-bit data (16-bit PGMs open as I: every value
                                 <= 65535) scaled as I;16, else v * 255 / (2^31 - 1), PIL's int32 range;
                                 negatives are 0
    F                            32-bit float greyscale in 0..1 (clipped): v * 255, rounded
    RGBA, LA, PA, P with transparency
                                 composited over white (what a viewer on a white page shows)
EXIF orientation is not applied, as in torchvision's ImageFolder and the anchors' pipelines.
`conversion(im)` names what was done to a file (None for plain 8-bit RGB / greyscale / palette): the data
check reports it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS  # what ImageFolder reads

BACKGROUND = 255  # white, behind transparent pixels


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def _grey_range(im: Image.Image, a: np.ndarray) -> float:
    if im.mode.startswith("I;16"):
        return 65535.0
    if im.mode == "I":
        return 65535.0 if a.size == 0 or a.max() <= 65535 else float(2**31 - 1)
    return 1.0  # F


def conversion(im: Image.Image) -> str | None:
    """What `to_rgb` does to this image beyond a plain 8-bit decode, in words (None: nothing notable)."""
    if im.mode.startswith("I;16"):
        return f"16-bit greyscale ({im.mode}) scaled to 8 bits"
    if im.mode == "I":
        a = np.asarray(im)
        return f"32-bit integer greyscale scaled to 8 bits (range 0..{int(_grey_range(im, a))})"
    if im.mode == "F":
        return "32-bit float greyscale (0..1) scaled to 8 bits"
    if im.mode == "CMYK":
        return "CMYK converted to RGB"
    if _has_alpha(im):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if (alpha < 255).any():
            return f"{im.mode} with transparency composited over white ({int((alpha < 255).sum())} transparent pixels)"
    return None


def to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB PIL image of `im`, by the rules in the module docstring."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)
        grey = np.clip(np.rint(a * 255.0 / _grey_range(im, a)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if im.mode == "CMYK":
        c = np.asarray(im).astype(np.float64) / 255.0
        rgb = 255.0 * (1.0 - c[..., :3]) * (1.0 - c[..., 3:])
        return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """The file at `path` as an 8-bit RGB PIL image (decoded fully; a truncated file raises here)."""
    with open(path, "rb") as f:
        im = Image.open(f)
        im.load()
    return to_rgb(im)


def read_rgb(path: str | Path) -> torch.Tensor:
    """The file at `path` as a uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.array(open_rgb(path), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def is_image_name(name: str) -> bool:
    """A file name ImageFolder reads (by extension, case-insensitive)."""
    return name.lower().endswith(IMG_EXTENSIONS)


def class_folders(root: str | Path) -> list[str]:
    """The class folder names of an ImageFolder split, sorted (as torchvision's `find_classes`)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def split_difference(train: str | Path, val: str | Path) -> tuple[list[str], list[str], list[str]]:
    """(train's classes, val's classes that train lacks, train's classes that val lacks), each sorted."""
    classes, val_classes = class_folders(train), class_folders(val)
    return classes, sorted(set(val_classes) - set(classes)), sorted(set(classes) - set(val_classes))
