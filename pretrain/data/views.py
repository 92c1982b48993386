"""Several pairs of views per image ("add-one" view generation) and the dataset that makes them.

Pair k uses `pairs[k].types`; with the authors' setting each pair adds one augmentation type to the
previous one and is contrasted after backbone stage `pairs[k].stage`. One pair with the full set
at stage 4 is the plain baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from pretrain.data.images import read_rgb
from pretrain.transforms.augment import AugPipeline


@dataclass(frozen=True)
class PairSpec:
    """One pair of views: contrasted after ResNet stage `stage` (1..4 = layer1..layer4 = res2..res5)."""

    stage: int
    views: tuple[AugPipeline, AugPipeline]


class MultiViewTransform:
    """uint8 image (3, H, W) -> (views: list of 2P tensors (3, S, S), params: list of 2P vectors).

    geometric_only: the views stop after crop/resize/flip (uint8) and the training device does the
    rest over the whole batch (`augment.device: train`, `photometric.DeviceAugment`); the parameters
    are drawn the same either way."""

    def __init__(self, pairs: list[PairSpec], geometric_only: bool = False):
        if not pairs:
            raise ValueError("at least one pair of views is needed")
        self.pairs, self.geometric_only = pairs, geometric_only

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        views, params = [], []
        for pair in self.pairs:
            for pipe in pair.views:
                x, v = pipe(img, g, self.geometric_only)
                views.append(x)
                params.append(v)
        return views, params


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample `index` in `epoch`: independent of workers, ranks and resumes."""
    return (seed * 1_000_003 + epoch) * 2_147_483_647 + index & 0x7FFF_FFFF_FFFF_FFFF


class MultiViewDataset(Dataset):
    """ImageFolder images turned into several pairs of views, deterministically per (seed, epoch, index).

    Indexed by (index, epoch) tuples (see `pretrain.data.sampler.ResumableSampler`). Items:
    (views list of (3, S, S), params list of (PARAM_DIM,), label, skipped paths).
    An unreadable image is replaced by another one drawn from the sample's own generator, so the
    replacement (and a resumed run) is deterministic; its path is returned for the trainer to count.
    """

    max_attempts = 10

    def __init__(self, root: str, transform: MultiViewTransform, seed: int = 0, classes: list[str] | None = None):
        self.folder = ImageFolder(root, loader=lambda p: p, allow_empty=False)
        if classes is not None:  # e.g. an ImageNet-100 class list
            missing = sorted(set(classes) - set(self.folder.class_to_idx))
            if missing:
                raise ValueError(f"{root}: classes {missing[:5]}{'...' if len(missing) > 5 else ''} from the class list are not folders there")
            keep = {self.folder.class_to_idx[c] for c in classes}
            self.folder.samples = [s for s in self.folder.samples if s[1] in keep]
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        skipped: list[str] = []
        for _ in range(self.max_attempts):
            path, label = self.folder.samples[index]
            try:
                img = read_rgb(path)  # the project's one reader: every PIL mode -> 8-bit RGB
                break
            except (RuntimeError, OSError, ValueError, SyntaxError):
                skipped.append(path)
                index = int(torch.randint(len(self), (), generator=g))
        else:
            raise RuntimeError(f"{self.max_attempts} unreadable images in a row ({', '.join(skipped[:3])}, ...): is "
                               f"{self.folder.root} the right folder? `tools/check_data.py {self.folder.root}` lists every bad file")
        views, params = self.transform(img, g)
        return views, params, label, skipped


def read_class_list(path: str | None) -> list[str] | None:
    """The class folder names listed in `path` (one per line, # comments), or None."""
    if path is None:
        return None
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    except OSError as e:
        raise FileNotFoundError(f"data.class_list={path}: {e.strerror or e}") from None
    return [ln for ln in lines if ln and not ln.startswith("#")]
