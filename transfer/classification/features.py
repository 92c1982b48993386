"""Backbones for probing: load any supported checkpoint into a torchvision ResNet, extract pooled features."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import models
from torchvision.transforms import v2 as T
from tqdm import tqdm

from pretrain.runs.files import save_atomic
from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD

from ..weights import extract_backbone, reference_state_dict
from .datasets import image_folder


class PooledStage(nn.Module):
    """A torchvision ResNet cut after layer `stage` (1..4 = layer1..layer4 = res2..res5) and globally
    average-pooled: (N, 3, H, W) -> (N, C) with C = 64/128/256/512 (ResNet-18/34) or 256/512/1024/2048
    (ResNet-50/101). Stage 4 is the usual pooled feature (torchvision's forward without fc)."""

    def __init__(self, net: nn.Module, stage: int = 4):
        super().__init__()
        if stage not in (1, 2, 3, 4):
            raise ValueError(f"stage must be 1..4 (layer1..layer4), got {stage}")
        self.net, self.stage = net, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        for s in range(1, self.stage + 1):
            x = getattr(n, f"layer{s}")(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def build_backbone(weights: str, arch: str = "resnet50", seed: int = 0, stage: int = 4) -> tuple[nn.Module, dict]:
    """Pooled features of layer `stage` of a torchvision ResNet (`PooledStage`) from a checkpoint, or
    `weights="random"`. Returns (model, load report). Every backbone tensor must load: missing/unexpected
    keys are errors."""
    if weights == "random":
        torch.manual_seed(seed)
        net = getattr(models, arch)(weights=None)
        report = {"source": "random init", "arch": arch, "loaded": 0, "missing": [], "unexpected": []}
    else:
        ex = extract_backbone(weights)
        arch = f"resnet{ex.depth}"
        net = getattr(models, arch)(weights=None)
        res = net.load_state_dict(ex.state_dict, strict=False)
        missing = [k for k in res.missing_keys if not k.startswith("fc.")]
        if missing or res.unexpected_keys:
            raise RuntimeError(f"{weights}: backbone did not load: missing {missing[:5]}, unexpected {res.unexpected_keys[:5]}")
        report = {"source": str(weights), "layout": ex.layout, "arch": arch, "loaded": len(ex.state_dict),
                  "expected": len(reference_state_dict(ex.depth)), "missing": missing, "unexpected": res.unexpected_keys,
                  "dropped": dict(ex.dropped)}
    net.fc = nn.Identity()
    return PooledStage(net, stage), dict(report, stage=stage)


def eval_crop(size: int = 224) -> T.Compose:
    """Resize(size·256/224) + CenterCrop(size): a uint8 image (3, size, size)."""
    return T.Compose([T.ToImage(), T.Resize(round(size * 256 / 224), antialias=True), T.CenterCrop(size)])


def eval_transform(size: int = 224) -> T.Compose:
    """`eval_crop`, ImageNet normalisation."""
    return T.Compose([eval_crop(size), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform(size: int = 224) -> T.Compose:
    """RandomResizedCrop(size) + horizontal flip, ImageNet normalisation (MoCo linear protocol)."""
    return T.Compose([T.ToImage(), T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def extract_features(model: nn.Module, folder: Path, size: int, batch_size: int = 128, workers: int = 4,
                     device: str = "cpu", cache_dir: Path | None = None, desc: str = "features",
                     classes: list[str] | None = None):
    """Pooled features (N, C), labels (N,) and the class list of an ImageFolder (labels index `classes`, by
    name, when given: `datasets.split_classes`), cached in `cache_dir` by (weights, stage, folder, size, image
    count, classes); the cache file is written atomically, and one that cannot be read is recomputed."""
    ds = image_folder(folder, eval_transform(size), classes)
    cache = None
    if cache_dir is not None:
        tag = (f"{_fingerprint(model)}|stage{getattr(model, 'stage', 4)}|{Path(folder).resolve()}|{size}|{len(ds)}|"
               + "/".join(ds.classes))
        cache = Path(cache_dir) / f"feats_{hashlib.sha256(tag.encode()).hexdigest()[:20]}.pt"
        hit = _read_cache(cache, len(ds))
        if hit is not None:
            return hit[0], hit[1], ds.classes
    model.eval().to(device)
    feats, labels = [], []
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)
    for x, y in tqdm(loader, desc=desc, unit="batch", leave=False):
        feats.append(model(x.to(device)).float().cpu())
        labels.append(y)
    out = torch.cat(feats), torch.cat(labels)
    if cache is not None:
        save_atomic({"features": out[0], "labels": out[1]}, cache)
    return out[0], out[1], ds.classes


def _read_cache(path: Path, n: int):
    """(features, labels) from a cache file, or None when it is absent, unreadable or not n samples."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, weights_only=True)
        if len(d["features"]) == len(d["labels"]) == n:
            return d["features"], d["labels"]
    except Exception:  # noqa: BLE001  a broken cache is a cache miss, whatever torch raises
        pass
    print(f"[features] {path}: unreadable or incomplete cache; recomputing it")
    return None
