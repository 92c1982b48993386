"""Find bad data before a run does: unreadable images, missing annotation/mask files, masks whose size
differs from their image, label values outside the dataset's classes.

`items(task, root)` lists what a task reads, in the layouts the README names (the same ones the
readers use); `check(items, decode=...)` finds the faults. With `decode=False` it only checks that the
files exist (cheap: the transfer tasks run it before training); `tools/check_data.py` decodes every
file in parallel. A fault: {"split", "file", "problem"}.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS  # what ImageFolder (pretraining, probes) reads
from tqdm import tqdm

from .tasks import TASKS as TRANSFER_TASKS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
               "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
IGNORE = 255
SPLITS = ("train", "val", "test")
# the data checks: pretraining's ImageFolder, then each transfer task's data kind (transfer/tasks.py)
TASKS = ("pretrain", *dict.fromkeys(t.data for t in TRANSFER_TASKS.values()))


@dataclass(frozen=True)
class Item:
    """One sample: its image and, by kind, its VOC XML (`xml`), semantic mask (`mask`, labels < `num_classes`
    or 255) or nothing (`image`); `size` (width, height) when an annotation file states it (COCO)."""

    split: str
    image: Path
    kind: str = "image"
    ann: Path | None = None
    num_classes: int = 0
    size: tuple[int, int] | None = None


def _lines(path: Path) -> list[str]:
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def _imagefolder(root: Path) -> list[Item]:
    return [Item(str(p.parent.relative_to(root)), p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]


def _voc_det(root: Path) -> list[Item]:
    out = []
    for year in ("VOC2007", "VOC2012"):
        for split_file in sorted((root / year / "ImageSets/Main").glob("*.txt")):
            if split_file.stem in ("train", "val", "trainval", "test"):
                out += [Item(f"{year}/{split_file.stem}", root / year / "JPEGImages" / f"{i}.jpg", "xml",
                             root / year / "Annotations" / f"{i}.xml") for i in _lines(split_file)]
    return out


def _voc_seg(root: Path) -> list[Item]:
    out = []
    for split, masks in (("train", "SegmentationClass"), ("val", "SegmentationClass"), ("aug", "SegmentationClassAug")):
        f = root / "ImageSets/Segmentation" / f"{split}.txt"
        if f.is_file():
            out += [Item(split, root / "JPEGImages" / f"{i}.jpg", "mask", root / masks / f"{i}.png", 21) for i in _lines(f)]
    return out


def _cityscapes(root: Path) -> list[Item]:
    out = []
    for split in ("train", "val"):
        for img in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
            mask = root / "gtFine" / split / img.parent.name / img.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
            out.append(Item(split, img, "mask", mask, 19))
    return out


def _coco(root: Path) -> tuple[list[Item], list[dict]]:
    """COCO images with their JSON's sizes; faults of the JSON itself (missing file, unknown category)."""
    items, faults = [], []
    for split in ("train2017", "val2017"):
        ann = root / "coco/annotations" / f"instances_{split}.json"
        if not ann.is_file():
            faults.append({"split": split, "file": str(ann), "problem": "annotation file missing"})
            continue
        doc = json.loads(ann.read_text())
        cats = {c["id"] for c in doc["categories"]}
        for a in doc["annotations"]:
            if a["category_id"] not in cats:
                faults.append({"split": split, "file": str(ann), "problem": f"annotation {a['id']}: category_id "
                               f"{a['category_id']} is not among the categories {sorted(cats)}"})
        items += [Item(split, root / "coco" / split / im["file_name"], size=(im["width"], im["height"])) for im in doc["images"]]
    return items, faults


def items(task: str, root: str | Path, splits: set[str] | None = None) -> tuple[list[Item], list[dict]]:
    """(samples the task reads under `root`, faults found while listing them). `root` is what the task's
    data option takes: the ImageFolder root (pretrain, cls), the folder holding VOC2007/VOC2012 or coco/
    (detection), the VOC2012 folder (voc_seg), the cityscapes folder (cityscapes_seg). `splits` keeps
    only those splits ("VOC2007/trainval", "train2017", "val", ...)."""
    root = Path(root)
    if splits is not None:
        found, faults = items(task, root)
        return [i for i in found if i.split in splits], [f for f in faults if f["split"] in splits]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    if task in ("pretrain", "cls"):
        _check_imagefolder_level(task, root)
        return _imagefolder(root), []
    if task == "voc_det":
        return _voc_det(root), []
    if task in ("coco_det", "coco_instseg"):
        return _coco(root)
    if task == "voc_seg":
        return _voc_seg(root), []
    if task == "cityscapes_seg":
        return _cityscapes(root), []
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def _check_imagefolder_level(task: str, root: Path) -> None:
    """`cls` takes the folder holding train/ and val/ (or test/), `pretrain` one ImageFolder (class folders):
    a root one level off is named with the folder to pass instead."""
    subs = {p.name for p in root.iterdir() if p.is_dir()}
    splits = subs & set(SPLITS)
    if task == "cls" and not ("train" in splits and splits - {"train"}):
        images_in_classes = any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for d in root.iterdir() if d.is_dir()
                                for p in d.iterdir())
        hint = (f"{root} holds class folders with images: it looks like one split; pass its parent {root.parent}"
                if images_in_classes else f"found {sorted(subs) or 'no folders'}")
        raise ValueError(f"--task cls takes the folder holding train/ and val/ (or test/) class folders; {hint}")
    if task == "pretrain" and "train" in splits and splits - {"train"}:
        raise ValueError(f"{root} holds {sorted(splits)}: pretraining reads one ImageFolder (class folders with images); "
                         f"pass {root / 'train'}")


def _read(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()  # decodes fully: truncated files fail here
    return im


def _check_one(item: Item, decode: bool) -> list[dict]:
    def fault(file, problem):
        return {"split": item.split, "file": str(file), "problem": problem}

    out = []
    if not item.image.is_file():
        out.append(fault(item.image, "image file missing"))
    if item.ann is not None and not item.ann.is_file():
        out.append(fault(item.ann, "annotation file missing" if item.kind == "xml" else "mask file missing"))
    if out or not decode:
        return out
    try:
        size = _read(item.image).size
    except Exception as e:  # noqa: BLE001  any decoder error means the file is unusable
        return [fault(item.image, f"unreadable image ({type(e).__name__}: {e})")]
    if item.size is not None and size != item.size:
        out.append(fault(item.image, f"image is {size[0]}x{size[1]}, the annotation says {item.size[0]}x{item.size[1]}"))
    elif item.kind == "xml":
        try:
            names = {o.findtext("name", "").strip() for o in ET.parse(item.ann).findall("object")}
        except ET.ParseError as e:
            return [fault(item.ann, f"unreadable annotation ({e})")]
        if names - set(VOC_CLASSES):
            out.append(fault(item.ann, f"object names outside the 20 VOC classes: {sorted(names - set(VOC_CLASSES))}"))
    elif item.kind == "mask":
        try:
            mask = _read(item.ann)
        except Exception as e:  # noqa: BLE001
            return [fault(item.ann, f"unreadable mask ({type(e).__name__}: {e})")]
        if mask.size != size:
            out.append(fault(item.ann, f"mask is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}"))
        values = np.unique(np.asarray(mask))
        bad = [int(v) for v in values if v >= item.num_classes and v != IGNORE]
        if bad:
            out.append(fault(item.ann, f"label values {bad} outside 0..{item.num_classes - 1} (and {IGNORE}, ignore)"))
    return out


def check(samples: list[Item], decode: bool = True, workers: int = 8, progress: bool = True) -> list[dict]:
    """Faults of every sample, in listing order; decoding runs on `workers` threads with a progress bar."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda it: _check_one(it, decode), samples)
        return [f for r in tqdm(results, total=len(samples), desc="checking" if decode else "files", unit="file",
                                disable=not progress, dynamic_ncols=True) for f in r]


def require_files(task: str, root: str | Path, splits: set[str] | None = None) -> None:
    """Before training: every image/annotation/mask the task lists exists, else a FileNotFoundError that
    names the first missing files, their split and the data check command."""
    samples, faults = items(task, root, splits)
    faults += check(samples, decode=False, progress=False)
    if faults:
        shown = "; ".join(f"{f['split']}: {f['file']} ({f['problem']})" for f in faults[:5])
        raise FileNotFoundError(f"{len(faults)} problems in {root} for {task}: {shown}"
                                f"{' ...' if len(faults) > 5 else ''}. Full list: tools/check_data.py {root} --task {task}")
