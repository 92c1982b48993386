"""Find bad data before a run does, and everything a run would refuse, skip, drop, clip or convert.

`items(name, root)` lists what a task reads (a task name or a data layout: `LAYOUTS`), in the layouts the README names (the same ones the
readers use), with the faults of the listing itself (empty class folders, dangling symlinks, stray
files, split class sets that differ, COCO crowd regions and images without annotations);
`check(items, decode=...)` finds the faults of each sample. With `decode=False` it only checks that
the files exist and masks are index images (cheap: the transfer tasks run it before training);
`tools/check_data.py` decodes every file in parallel. A fault: {"split", "file", "problem", "severity"}:
"error" (a run refuses it, or its result would be wrong) or "warning" (a run changes or skips it, and says so).
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pretrain.data.images import class_folders, conversion, is_image_name, split_difference

from .classification.datasets import resolve
from .tasks import TASKS as TRANSFER_TASKS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
               "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
IGNORE = 255
SPLITS = ("train", "val", "test")
# what tools/check_data.py --task takes: pretraining's ImageFolder, the probes' split folders, every transfer task
TASKS = ("pretrain", "cls", *TRANSFER_TASKS)


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


def fault(split: str, file, problem: str, severity: str = "error") -> dict:
    return {"split": split, "file": str(file), "problem": problem, "severity": severity}


def _lines(path: Path) -> list[str]:
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def _imagefolder_split(root: Path, split: Path) -> tuple[list[Item], list[dict]]:
    """One ImageFolder split as torchvision's ImageFolder walks it (class folders, symlinks followed, files
    kept by extension), with what it would refuse or ignore."""
    items, faults = [], []
    for cls in class_folders(split):
        name = str((split / cls).relative_to(root))
        n = 0
        for folder, _, files in sorted(os.walk(split / cls, followlinks=True)):
            for f in sorted(files):
                path = Path(folder) / f
                if not is_image_name(f):
                    faults.append(fault(name, path, "not an image file (ImageFolder ignores it)", "warning"))
                elif path.is_symlink() and not path.exists():
                    faults.append(fault(name, path, f"dangling symlink (its target {os.readlink(path)} does not exist): "
                                        "pretraining skips it as unreadable, the probes stop"))
                else:
                    items.append(Item(name, path))
                    n += 1
        if n == 0:
            faults.append(fault(name, split / cls, "class folder holds no image: the runs refuse it (remove the folder)"))
    return items, faults


def _imagefolder(task: str, root: Path) -> tuple[list[Item], list[dict]]:
    if task == "pretrain":
        return _imagefolder_split(root, root)
    _, train, val = resolve(None, root)  # the evaluation split the probes pick (val/, else test/)
    items, faults = _imagefolder_split(root, train)
    more, more_faults = _imagefolder_split(root, val)
    _, extra, absent = split_difference(train, val)
    faults += more_faults
    faults += [fault(val.name, val / c, f"class folder that {train} lacks: the probes stop (its images cannot be scored "
                     "against train's classes)") for c in extra]
    faults += [fault(val.name, val / c, f"train class with no images in {val}: scored as absent (null per class)",
                     "warning") for c in absent]
    return items + more, faults


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
                faults.append(fault(split, ann, f"annotation {a['id']}: category_id {a['category_id']} is not among the "
                                    f"categories {sorted(cats)}"))
        sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
        for a in doc["annotations"]:
            if not a.get("iscrowd", 0) and a["image_id"] in sizes:
                x, y, w, h = a["bbox"]
                faults += [fault(split, ann, f"annotation {a['id']}: {p}", sev)
                           for p, sev in box_problems(x, y, x + w, y + h, *sizes[a["image_id"]])]
        crowd = sum(1 for a in doc["annotations"] if a.get("iscrowd", 0))
        if crowd:
            faults.append(fault(split, ann, f"{crowd} crowd annotation(s) (iscrowd=1): not trained on; ignored regions in "
                                "evaluation", "warning"))
        empty = len(set(sizes) - {a["image_id"] for a in doc["annotations"]})
        if empty:
            faults.append(fault(split, ann, f"{empty} image(s) without annotations: left out of training "
                                "(DATALOADER.FILTER_EMPTY_ANNOTATIONS), kept in evaluation", "warning"))
        items += [Item(split, root / "coco" / split / im["file_name"], size=(im["width"], im["height"])) for im in doc["images"]]
    return items, faults


BOX_SLACK = 2  # pixels a box may reach past the image (annotation rounding) before it is a data error


def _imagefolder_at_level(layout: str):
    def listing(root: Path) -> tuple[list[Item], list[dict]]:
        _check_imagefolder_level(layout, root)
        return _imagefolder(layout, root)
    return listing


# data layouts (a task's `data` in transfer/tasks.py) -> the listing of what a run reads under its root
LAYOUTS = {"pretrain": _imagefolder_at_level("pretrain"), "cls": _imagefolder_at_level("cls"),
           "voc": lambda root: (_voc_det(root), []), "coco": _coco, "voc_masks": lambda root: (_voc_seg(root), []),
           "cityscapes": lambda root: (_cityscapes(root), [])}


def box_problems(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> list[tuple[str, str]]:
    """(problem, severity) of a box in absolute pixel corners (0-based, x1/y1 exclusive as detectron2 reads VOC)
    on a width x height image: zero area (dropped), reaching past the image (clipped; more than BOX_SLACK px:
    an error), or nothing left inside the image (dropped)."""
    if x1 <= x0 or y1 <= y0:
        return [(f"zero-area box ({x0:g}, {y0:g}, {x1:g}, {y1:g}): dropped by the run", "warning")]
    past = max(-x0, -y0, x1 - width, y1 - height)
    if past <= 0:
        return []
    if min(x1, width) <= max(x0, 0) or min(y1, height) <= max(y0, 0):
        return [(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {width}x{height} image: dropped by the run", "error")]
    return [(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the {width}x{height} image by {past:g} px: clipped by the "
             "run", "warning" if past <= BOX_SLACK else "error")]


def voc_boxes(xml: Path, size: tuple[int, int] | None = None) -> list[tuple[str, str]]:
    """`box_problems` of every object of a VOC annotation; the image size from `size` or the XML's <size>.
    detectron2 reads VOC's 1-based inclusive corners as (xmin - 1, ymin - 1, xmax, ymax)."""
    root = ET.parse(xml).getroot()
    w, h = size or (int(root.findtext("size/width")), int(root.findtext("size/height")))
    out = []
    for o in root.findall("object"):
        b = [float(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
        out += box_problems(b[0] - 1, b[1] - 1, b[2], b[3], w, h)
    return out


def box_report(task: str, root: str | Path, splits: set[str] | None = None) -> dict:
    """What a detection run does to the boxes of its splits (no image decoded: sizes from the XML / JSON):
    {"dropped": n, "clipped": n, "files": {file: [problems]}} (clipped: reaching past the image)."""
    found, faults = items(task, root, splits)
    faults = [f for f in faults if "box" in f["problem"]]
    for it in found:
        if it.kind == "xml" and it.ann.is_file():
            faults += [fault(it.split, it.ann, p, sev) for p, sev in voc_boxes(it.ann)]
    files: dict[str, list[str]] = {}
    for f in faults:
        files.setdefault(f["file"], []).append(f["problem"])
    problems = [f["problem"] for f in faults]
    return {"dropped": sum("dropped" in p for p in problems), "clipped": sum("clipped" in p for p in problems), "files": files}


def items(task: str, root: str | Path, splits: set[str] | None = None) -> tuple[list[Item], list[dict]]:
    """(samples `task` (a task name or a layout of `LAYOUTS`) reads under `root`, faults found while listing them). `root` is what the task's
    data option takes: the ImageFolder root (pretrain, cls), the folder holding VOC2007/VOC2012 or coco/
    (detection), the VOC2012 folder (voc_seg), the cityscapes folder (cityscapes_seg). `splits` keeps
    only those splits ("VOC2007/trainval", "train2017", "val", ...)."""
    root = Path(root)
    if splits is not None:
        found, faults = items(task, root)
        return [i for i in found if i.split in splits], [f for f in faults if f["split"] in splits]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    layout = TRANSFER_TASKS[task].data if task in TRANSFER_TASKS else task
    if layout not in LAYOUTS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    return LAYOUTS[layout](root)


def _check_imagefolder_level(task: str, root: Path) -> None:
    """`cls` takes the folder holding train/ and val/ (or test/), `pretrain` one ImageFolder (class folders):
    a root one level off is named with the folder to pass instead."""
    subs = {p.name for p in root.iterdir() if p.is_dir()}
    splits = subs & set(SPLITS)
    if task == "cls" and not ("train" in splits and splits - {"train"}):
        images_in_classes = any(p.is_file() and is_image_name(p.name) for d in root.iterdir() if d.is_dir()
                                for p in d.iterdir())
        hint = (f"{root} holds class folders with images: it looks like one split; pass its parent {root.parent}"
                if images_in_classes else f"found {sorted(subs) or 'no folders'}")
        raise ValueError(f"--task cls takes the folder holding train/ and val/ (or test/) class folders; {hint}")
    if task == "pretrain" and "train" in splits and splits - {"train"}:
        raise ValueError(f"{root} holds {sorted(splits)}: pretraining reads one ImageFolder (class folders with images); "
                         f"pass {root / 'train'}")


def _read(path: Path) -> Image.Image:
    with open(path, "rb") as f:
        im = Image.open(f)
        im.load()  # decodes fully: truncated files fail here
    return im


COLOUR_MASK = ("RGB colour mask; expected an index or palette PNG (one class index per pixel, e.g. VOC's "
               "SegmentationClass palette PNGs or Cityscapes' *_labelTrainIds.png)")
INDEX_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")


def _check_one(item: Item, decode: bool) -> list[dict]:
    def bad(file, problem, severity="error"):
        return fault(item.split, file, problem, severity)

    out = []
    if not item.image.is_file():
        out.append(bad(item.image, "image file missing"))
    if item.ann is not None and not item.ann.is_file():
        out.append(bad(item.ann, "annotation file missing" if item.kind == "xml" else "mask file missing"))
    if out:
        return out
    if item.kind == "mask":  # the header is enough for the mode: checked before training too
        try:
            with Image.open(item.ann) as m:
                mode = m.mode
        except Exception as e:  # noqa: BLE001  any decoder error means the file is unusable
            return [bad(item.ann, f"unreadable mask ({type(e).__name__}: {e})")]
        if mode not in INDEX_MODES:
            return [bad(item.ann, f"{COLOUR_MASK} (mode {mode})")]
    if not decode:
        return out
    try:
        im = _read(item.image)
    except Exception as e:  # noqa: BLE001
        return [bad(item.image, f"unreadable image ({type(e).__name__}: {e})")]
    size = im.size
    note = conversion(im)
    if note:
        out.append(bad(item.image, f"{note} by the reader", "warning"))
    suffix = item.image.suffix.lower()
    if im.format and (suffix in (".jpg", ".jpeg")) != (im.format == "JPEG"):
        out.append(bad(item.image, f"{im.format} data in a {item.image.suffix} file: read by its content", "warning"))
    if item.size is not None and size != item.size:
        out.append(bad(item.image, f"image is {size[0]}x{size[1]}, the annotation says {item.size[0]}x{item.size[1]}"))
    elif item.kind == "xml":
        try:
            names = {o.findtext("name", "").strip() for o in ET.parse(item.ann).findall("object")}
            boxes = voc_boxes(item.ann, size)
        except (ET.ParseError, TypeError, ValueError) as e:
            return [bad(item.ann, f"unreadable annotation ({type(e).__name__}: {e})")]
        if names - set(VOC_CLASSES):
            out.append(bad(item.ann, f"object names outside the 20 VOC classes: {sorted(names - set(VOC_CLASSES))}"))
        out += [bad(item.ann, p, sev) for p, sev in boxes]
    elif item.kind == "mask":
        try:
            mask = _read(item.ann)
        except Exception as e:  # noqa: BLE001
            return [bad(item.ann, f"unreadable mask ({type(e).__name__}: {e})")]
        if mask.size != size:
            out.append(bad(item.ann, f"mask is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}"))
        values = np.unique(np.asarray(mask))
        wrong = [int(v) for v in values if v >= item.num_classes and v != IGNORE]
        if wrong:
            out.append(bad(item.ann, f"label values {wrong} outside 0..{item.num_classes - 1} (and {IGNORE}, ignore)"))
    return out


def check(samples: list[Item], decode: bool = True, workers: int = 8, progress: bool = True) -> list[dict]:
    """Faults of every sample, in listing order; decoding runs on `workers` threads with a progress bar."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda it: _check_one(it, decode), samples)
        return [f for r in tqdm(results, total=len(samples), desc="checking" if decode else "files", unit="file",
                                disable=not progress, dynamic_ncols=True) for f in r]


def require_files(task: str, root: str | Path, splits: set[str] | None = None) -> None:
    """Before training: every image/annotation/mask the task lists exists and every mask is an index image,
    else a FileNotFoundError that names the first faulty files, their split and the data check command."""
    samples, faults = items(task, root, splits)
    faults = [f for f in faults + check(samples, decode=False, progress=False) if f["severity"] == "error" and "box" not in f["problem"]]
    if faults:
        shown = "; ".join(f"{f['split']}: {f['file']} ({f['problem']})" for f in faults[:5])
        raise FileNotFoundError(f"{len(faults)} problems in {root} for {task}: {shown}"
                                f"{' ...' if len(faults) > 5 else ''}. Full list: tools/check_data.py {root} --task {task}")
