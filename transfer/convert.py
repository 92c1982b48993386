"""torchvision ResNet names -> Detectron2 names, and the files the transfer engines load.

Detectron2 needs, for these torchvision-style (RGB, [0,1]-normalised, stride in the 3×3 conv) weights:
    INPUT.FORMAT: "RGB"
    MODEL.PIXEL_MEAN: [123.675, 116.280, 103.530]   (ImageNet mean × 255)
    MODEL.PIXEL_STD:  [58.395, 57.120, 57.375]      (ImageNet std × 255)
    MODEL.RESNETS.STRIDE_IN_1X1: False
    MODEL.RESNETS.DEPTH: the converted depth (18/34 also need RES2_OUT_CHANNELS: 64)
The shipped configs under configs/transfer/detectron2/ set all of these.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from pretrain.runs.files import save_atomic, write_bytes_atomic
from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD

from .weights import DEPTHS, Extraction

NORM_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
PIXEL_MEAN = [round(255 * m, 3) for m in IMAGENET_MEAN]  # [123.675, 116.28, 103.53]
PIXEL_STD = [round(255 * s, 3) for s in IMAGENET_STD]  # [58.395, 57.12, 57.375]
D2_AUTHOR = "hier-aug"  # a converted .pkl's "__author__" starts with it


def d2_name(tv_key: str) -> str:
    """One torchvision ResNet key -> its Detectron2 name (layerN -> res(N+1), bnK -> convK.norm,
    downsample.0/1 -> shortcut / shortcut.norm, stem tensors under `stem.`)."""
    k = tv_key
    if not k.startswith("layer"):
        k = "stem." + k
    k = re.sub(r"layer([1-4])", lambda m: f"res{int(m.group(1)) + 1}", k)
    k = re.sub(r"bn([1-3])", r"conv\1.norm", k)
    k = k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    return k


def expected_d2_names(depth: int) -> set[str]:
    """The Detectron2 ResNet backbone tensor names of a ResNet-`depth`, listed from its block structure."""
    (kind, blocks), = [key for key, d in DEPTHS.items() if d == depth]
    convs = 3 if kind == "bottleneck" else 2
    names = {"stem.conv1.weight"} | {f"stem.conv1.norm.{f}" for f in NORM_FIELDS}
    for stage, n in enumerate(blocks, start=2):
        for b in range(n):
            p = f"res{stage}.{b}"
            for c in range(1, convs + 1):
                names |= {f"{p}.conv{c}.weight"} | {f"{p}.conv{c}.norm.{f}" for f in NORM_FIELDS}
            if b == 0 and (stage > 2 or kind == "bottleneck"):
                names |= {f"{p}.shortcut.weight"} | {f"{p}.shortcut.norm.{f}" for f in NORM_FIELDS}
    return names


def to_detectron2(ex: Extraction) -> dict[str, np.ndarray]:
    """Convert and check: the result has exactly the Detectron2 names of a ResNet-`ex.depth`."""
    out = {d2_name(k): v.numpy() for k, v in ex.state_dict.items()}
    want = expected_d2_names(ex.depth)
    if set(out) != want:
        missing, extra = sorted(want - set(out)), sorted(set(out) - want)
        raise ValueError(f"conversion does not cover ResNet-{ex.depth}: missing {missing[:5]}, unexpected {extra[:5]}")
    return out


def write_detectron2_pkl(ex: Extraction, path: str | Path, model: dict | None = None) -> dict[str, np.ndarray]:
    """Write {"model", "__author__", "matching_heuristics": True, "depth"} (numpy values) atomically;
    `model`: `to_detectron2(ex)` when already computed."""
    model = to_detectron2(ex) if model is None else model
    doc = detectron2_doc(ex, model)
    write_bytes_atomic(path, lambda f: pickle.dump(doc, f))
    return model


def detectron2_doc(ex: Extraction, model: dict[str, np.ndarray]) -> dict:
    """The content of a converted .pkl: {"model", "__author__" (D2_AUTHOR + the source layout),
    "matching_heuristics": True, "depth"}."""
    return {"model": model, "__author__": f"{D2_AUTHOR} ({ex.layout})", "matching_heuristics": True, "depth": ex.depth}


def write_torchvision_pth(ex: Extraction, path: str | Path, prefix: str = "") -> None:
    """Write the backbone as a torchvision state_dict (keys optionally prefixed, e.g. `backbone.` for
    mmseg's init_cfg) under "state_dict", with the source layout and depth as plain metadata."""
    sd = {prefix + k: v for k, v in ex.state_dict.items()}
    doc = {"state_dict": sd, "meta": {"source_layout": ex.layout, "depth": ex.depth, "arch": f"resnet{ex.depth}"}}
    save_atomic(doc, path)
