"""Named classification datasets (ImageFolder trees) so reports print proper names.

A user points `--data` at a root holding `train/` and `val/` (or `test/`) class folders; the
name only selects the display name, the paper's probe preset and the folder names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pretrain.data.images import open_rgb, split_difference


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


def split_classes(train: str | Path, val: str | Path) -> tuple[list[str], list[str]]:
    """(the label space: train's class folders, sorted; train's classes that val lacks). Val's labels are
    mapped to train's by class *name* (`image_folder(val, classes=...)`); a val class that train lacks is a
    ValueError naming it, since its images cannot be scored against train's classes."""
    classes, extra, absent = split_difference(train, val)
    if extra:
        raise ValueError(f"{val} has class folder(s) {extra[:5]}{' ...' if len(extra) > 5 else ''} that {train} lacks: their "
                         "images cannot be scored against train's classes. Remove them from the evaluation split or add "
                         f"them to {Path(train).name}/ (tools/check_data.py {Path(train).parent} --task cls lists the split differences)")
    return classes, absent


def _load(path: str) -> Image.Image:
    try:
        return open_rgb(path)
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises all three for broken files
        raise OSError(f"{path}: unreadable image ({type(e).__name__}: {e}); tools/check_data.py lists every bad file") from None


def image_folder(folder: str | Path, transform=None, classes: list[str] | None = None):
    """torchvision's ImageFolder reading through the project's one image reader (`pretrain.images`). With
    `classes` (train's, from `split_classes`) the labels index that list by class name. A folder without
    class sub-folders or with an empty class folder is an error naming the folder."""
    from torchvision import datasets

    try:
        ds = datasets.ImageFolder(str(folder), transform=transform, loader=_load)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder}: {e} Every class folder needs at least one image; remove empty class folders "
                                "(tools/check_data.py ROOT --task cls lists the problems).") from None
    if classes is not None and ds.classes != list(classes):
        index = {c: i for i, c in enumerate(classes)}
        missing = sorted(set(ds.classes) - set(index))
        if missing:
            raise ValueError(f"{folder}: class folder(s) {missing[:5]} are not among the training classes")
        to_train = [index[c] for c in ds.classes]
        ds.samples = [(p, to_train[y]) for p, y in ds.samples]
        ds.imgs, ds.targets = ds.samples, [y for _, y in ds.samples]
        ds.classes, ds.class_to_idx = list(classes), index
    return ds
