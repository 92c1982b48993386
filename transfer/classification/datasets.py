"""Named classification datasets (ImageFolder trees) so reports print proper names.

A user points `--data` at a root holding `train/` and `val/` (or `test/`) class folders; the
name only selects the display name, the paper's probe preset and the folder names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClsDataset:
    key: str
    title: str
    preset: str  # the default linear-probe preset (`linear.PRESETS`): MoCo's for ImageNet, else the paper's
    val_dirs: tuple[str, ...] = ("val", "test")

    @property
    def demo(self) -> bool:
        """A split of the generated demo world: its runs are labelled with the demo protocol."""
        return self.preset == "demo"


REGISTRY = {d.key: d for d in (
    ClsDataset("imagenet", "ImageNet-1K", "moco"),  # the community standard; the paper's 90 ep: --preset paper_in1k
    ClsDataset("imagenet100", "ImageNet-100", "paper_200e"),
    ClsDataset("cub200", "CUB-200-2011", "paper_200e"),
    ClsDataset("cars196", "Stanford Cars", "paper_cars_adam"),
    ClsDataset("aircraft", "FGVC-Aircraft", "paper_200e"),
    ClsDataset("flowers102", "Oxford Flowers-102", "paper_200e"),
    ClsDataset("inat2019", "iNaturalist 2019", "paper_200e"),
    ClsDataset("pets", "Oxford-IIIT Pets", "paper_200e"),
    ClsDataset("dtd", "Describable Textures (DTD)", "paper_200e"),
    ClsDataset("demo", "demo world (synthetic)", "demo"),
    ClsDataset("demo_colour", "demo world, colour x shape (synthetic)", "demo"),
)}


def resolve(name: str | None, root: str | Path) -> tuple[ClsDataset, Path, Path]:
    """(dataset entry, train folder, val folder); an unnamed dataset is titled by its folder name."""
    root = Path(root)
    if name and name not in REGISTRY:
        raise ValueError(f"--dataset {name!r} is not a known dataset ({', '.join(REGISTRY)}); leave --dataset out for "
                         "another dataset (it is then titled by its folder name)")
    ds = REGISTRY[name] if name else ClsDataset(root.name, root.name, "moco")
    train = root / "train"
    val = next((root / v for v in ds.val_dirs if (root / v).is_dir()), None)
    if not train.is_dir() or val is None:
        raise FileNotFoundError(f"{root}: expected ImageFolder sub-folders train/ and val/ (or test/); "
                                f"found {sorted(p.name for p in root.iterdir()) if root.is_dir() else 'no such folder'}")
    return ds, train, val


def image_folder(folder: str | Path, transform=None):
    """torchvision's ImageFolder; a folder without class sub-folders or with an empty class folder is an
    error naming the folder."""
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder}: {e} Every class folder needs at least one image; remove empty class folders "
                                "(tools/check_data.py ROOT --task cls lists the problems).") from None
