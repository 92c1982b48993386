"""Colour-information probe (the paper's Sec. 5.2 analysis, as its supplementary describes it): how much
colour information the frozen features keep.

The label definition (the description leaves the details open; this is the one used here):
  * a view of strength category c in 0..9 (the jitter strength split evenly into 10 categories) is the
    image's centre crop colour-jittered with strength t = c / 9 of the method's jitter magnitudes along
    one fixed direction: brightness, contrast and saturation factors 1 + 0.4·t and a hue shift of 0.1·t
    turns, applied in that order with the pretraining's own ops (`pretrain.photometric`);
  * label d = c2 − c1, the relative strength distance between the two views, drawn uniformly from 0..9
    (10 balanced classes); c1 is uniform in 0..9 − d and c2 = c1 + d; the weaker view comes first.
    The direction and the view order are fixed because the probe is linear: with a random sign per image
    or a random view order, the label would depend on |f(view 2) − f(view 1)| (an XOR of the two
    halves), which no linear classifier on concatenated features can represent, whatever the features.
The two pooled features are concatenated (N, 2C) and a linear classifier (the fast probe on cached
features) predicts d. Colour-invariant features cannot tell the views apart and score at chance (10%).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD, PARAM_DIM
from pretrain.transforms.photometric import photometric

from .datasets import image_folder
from .features import eval_crop
from .linear import linear_on_features

LEVELS = 10
MAGNITUDES = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue: the method's colour jitter
LABEL_DEFINITION = ("two views of one image colour-jittered with strengths c1/9 and c2/9 of (+0.4, +0.4, +0.4, +0.1) "
                    "(brightness, contrast, saturation, hue), d = c2 - c1 uniform in 0..9, c1 uniform in 0..9-d, weaker view "
                    "first; label d (10 classes); linear probe on the concatenated pooled features")


def draw_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Strength categories (c1, c2), each (n,), with d = c2 − c1 uniform in 0..LEVELS−1 and c1 uniform in
    0..LEVELS−1−d, from `seed`."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randint(0, LEVELS, (n,), generator=g)
    c1 = (torch.rand(n, generator=g) * (LEVELS - d)).floor().long()
    return c1, c1 + d


def pair_labels(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """The strength distance c2 − c1 (n,)."""
    return c2 - c1


def jitter_params(c: torch.Tensor) -> torch.Tensor:
    """Parameter vectors (n, PARAM_DIM) of views of strength category c (n,): jitter applied with factors
    1 + m·c/9 (brightness, contrast, saturation) and hue m·c/9, m = MAGNITUDES, in that order."""
    delta = torch.tensor(MAGNITUDES) * (c.float() / (LEVELS - 1)).unsqueeze(1)
    v = torch.zeros(len(c), PARAM_DIM)
    v[:, 7] = 1.0
    v[:, 8:11] = 1 + delta[:, :3]
    v[:, 11] = delta[:, 3]
    v[:, 12:16] = torch.arange(4.0)
    return v


@torch.no_grad()
def pair_features(model: nn.Module, folder, size: int, seed: int, pairs: int = 1, batch_size: int = 64, workers: int = 4,
                  device: str = "cpu", desc: str = "colour pairs") -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated features (N·pairs, 2C) of every image's view pairs and their labels (N·pairs,)."""
    base = image_folder(folder, eval_crop(size))
    c1, c2 = draw_pairs(len(base) * pairs, seed)
    model.eval().to(device)
    feats, i = [], 0
    loader = DataLoader(base, batch_size=batch_size, num_workers=workers, shuffle=False)
    for x, _ in tqdm(loader, desc=desc, unit="batch", leave=False):
        x = x.repeat_interleave(pairs, 0)
        sl = slice(i, i + len(x))
        views = [photometric(x, jitter_params(c[sl]), IMAGENET_MEAN, IMAGENET_STD) for c in (c1, c2)]
        feats.append(torch.cat([model(v.to(device)).float().cpu() for v in views], 1))
        i += len(x)
    return torch.cat(feats), pair_labels(c1, c2)


def colour_probe(model: nn.Module, train_dir, val_dir, size: int, seed: int = 0, pairs: int = 1, epochs: int = 100,
                 batch_size: int = 64, workers: int = 4, device: str = "cpu") -> dict:
    """Train the linear probe on the train split's pairs, evaluate on the val split's (other draws)."""
    tf, ty = pair_features(model, train_dir, size, 2 * seed, pairs, batch_size, workers, device, "colour pairs (train)")
    vf, vy = pair_features(model, val_dir, size, 2 * seed + 1, pairs, batch_size, workers, device, "colour pairs (val)")
    res = linear_on_features(tf, ty, vf, vy, LEVELS, epochs=epochs, seed=seed)
    chance = 100 * float(torch.bincount(vy, minlength=LEVELS).max()) / len(vy)
    return dict(res, chance=round(chance, 3), label_counts=torch.bincount(vy, minlength=LEVELS).tolist(),
                train_pairs=len(ty), val_pairs=len(vy), label_definition=LABEL_DEFINITION)
