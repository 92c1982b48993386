"""Point detectron2's builtin VOC/COCO dataset names at a user's data root.

The shipped configs use detectron2's builtin names (`voc_2007_trainval`, `voc_2012_trainval`,
`voc_2007_test`, `coco_2017_train`, `coco_2017_val`, ...). `register_root(root)` re-registers every
such name under `root` laid out as detectron2 expects under `$DETECTRON2_DATASETS`:

    root/VOC2007/{JPEGImages,Annotations,ImageSets/Main}   root/VOC2012/...
    root/coco/{train2017,val2017}  root/coco/annotations/instances_{train,val}2017.json
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES

from ..datacheck import box_report, require_files

VOC_NAMES = {f"voc_{year}_{split}": (f"VOC{year}", split, int(year))
             for year in ("2007", "2012") for split in ("train", "val", "trainval", "test")}
COCO_NAMES = {f"coco_{year}_{split}": (f"coco/{split}{year}", f"coco/annotations/instances_{split}{year}.json")
              for year in ("2014", "2017") for split in ("train", "val")}


class DatasetError(FileNotFoundError):
    """A dataset the config names is not where it should be; the message says what is expected."""


def _reregister(name: str, register, *args) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register(name, *args)


def voc_classes_in(root: Path, names: list[str]) -> list[str]:
    """The VOC class names that occur in the annotations of the given splits, in VOC order."""
    seen = set()
    for name in names:
        folder, split, _ = VOC_NAMES[name]
        ids = (root / folder / "ImageSets/Main" / f"{split}.txt").read_text().split()
        for i in ids:
            seen |= {o.findtext("name").strip() for o in ET.parse(root / folder / "Annotations" / f"{i}.xml").findall("object")}
    unknown = seen - set(VOC_CLASSES)
    if unknown:
        raise DatasetError(f"{root}: annotations use names outside the 20 VOC classes: {sorted(unknown)}")
    return [c for c in VOC_CLASSES if c in seen]


def _splits(names: list[str]) -> list[tuple[str, set[str]]]:
    """The data check's (layout, splits) of detectron2 dataset names."""
    voc = {"/".join(VOC_NAMES[n][:2]) for n in names if n in VOC_NAMES}
    coco = {COCO_NAMES[n][0].split("/")[1] for n in names if n in COCO_NAMES and n.startswith("coco_2017")}
    return [(task, splits) for task, splits in (("voc", voc), ("coco", coco)) if splits]


def require_dataset_files(root: str | Path, names: list[str]) -> None:
    """Before training (in the launching process): every image and annotation that the VOC splits list,
    and every image that the COCO JSONs list, exists; else a FileNotFoundError naming the files and split."""
    for task, splits in _splits(names):
        require_files(task, Path(root).expanduser(), splits)


def dataset_box_report(root: str | Path, names: list[str]) -> dict:
    """What detectron2 does to the boxes of these datasets (`datacheck.box_report`, merged): dropped and
    clipped counts and the files, for the run's record."""
    out = {"dropped": 0, "clipped": 0, "files": {}}
    for task, splits in _splits(names):
        r = box_report(task, Path(root).expanduser(), splits)
        out = {"dropped": out["dropped"] + r["dropped"], "clipped": out["clipped"] + r["clipped"], "files": {**out["files"], **r["files"]}}
    return out


def register_root(root: str | Path, names: list[str], classes_from_data: bool = False) -> list[str]:
    """Register `names` under `root`; returns the class names (VOC's 20, those found in the training
    annotations when `classes_from_data`, or the COCO JSON's categories)."""
    root = Path(root).expanduser()
    voc = [n for n in names if n in VOC_NAMES]
    coco = [n for n in names if n in COCO_NAMES]
    other = sorted(set(names) - set(voc) - set(coco))
    if other and not all(n in DatasetCatalog.list() for n in other):
        raise DatasetError(f"unknown dataset names {other}: use detectron2's builtin VOC/COCO names or register them yourself")
    classes: list[str] = list(VOC_CLASSES)
    for name in voc:
        folder, split, year = VOC_NAMES[name]
        need = root / folder / "ImageSets/Main" / f"{split}.txt"
        if not need.is_file():
            raise DatasetError(f"{name}: {need} not found; expected {root}/{folder}/{{JPEGImages,Annotations,ImageSets/Main}} "
                               "(set --data-root or $DETECTRON2_DATASETS)")
    if voc and classes_from_data:
        classes = voc_classes_in(root, voc)
    for name in voc:
        folder, split, year = VOC_NAMES[name]
        _reregister(name, register_pascal_voc, str(root / folder), split, year, classes)
        MetadataCatalog.get(name).evaluator_type = "pascal_voc"
    for name in coco:
        images, ann = COCO_NAMES[name]
        if not (root / ann).is_file() or not (root / images).is_dir():
            raise DatasetError(f"{name}: expected images in {root / images} and annotations in {root / ann} "
                               "(set --data-root or $DETECTRON2_DATASETS)")
        _reregister(name, register_coco_instances, {}, str(root / ann), str(root / images))
    if coco:  # category names from the smallest JSON (all splits share COCO's categories)
        ann = min((root / COCO_NAMES[n][1] for n in coco), key=lambda p: p.stat().st_size)
        cats = sorted(json.loads(ann.read_text())["categories"], key=lambda c: c["id"])
        classes = [c["name"] for c in cats]
    return classes
