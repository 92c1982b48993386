"""Writers for the demo world in real dataset layouts (ImageFolder, VOC, COCO, Cityscapes).

Layout under the output root (usable directly as DETECTRON2_DATASETS):
    imagefolder/{train,val}/<class>/*.jpg
    colour/{train,val}/<shape>-<hue>/*.jpg  (the colour split: label = shape and hue band)
    VOC2007/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}
    VOC2012/{JPEGImages,Annotations,ImageSets/Main/trainval.txt,
             SegmentationClass/*.png,ImageSets/Segmentation/{train,val,trainval}.txt}
    coco/{train2017,val2017}/*.jpg, coco/annotations/instances_{train,val}2017.json
    cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/*  (labelTrainIds masks)
    world.json  (the spec and counts)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import contourpy
import numpy as np
from PIL import Image
from tqdm import tqdm

from .render import COLOUR_CLASSES, SceneObject, WorldSpec, background, classification_image, colour_image, scene

IGNORE = 255
JPEG_QUALITY = 92
# Cityscapes train ids the demo classes map to (car, person, rider, truck, bus, bicycle, ...).
CITYSCAPES_OBJECT_IDS = (13, 11, 12, 14, 15, 18, 17, 16, 6, 7, 5)
CITYSCAPES_STUFF_IDS = (10, 2, 0)  # sky, building, road: three bands from top to bottom
CITYSCAPES_CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt",)}


@dataclass(frozen=True)
class Counts:
    """How many images each part of the world gets."""

    cls_train_per_class: int = 60
    cls_val_per_class: int = 20
    voc07_trainval: int = 100
    voc07_test: int = 60
    voc12_trainval: int = 100
    voc12_seg_val: int = 40
    coco_train: int = 120
    coco_val: int = 40
    cityscapes_train: int = 24
    cityscapes_val: int = 8
    colour_train_per_class: int = 60
    colour_val_per_class: int = 20


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 entries, flattened RGB), built from the class-index bits."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _save_jpeg(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=JPEG_QUALITY)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive pixel box (x0, y0, x1, y1) of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def semantic_mask(objs: list[SceneObject], shape: tuple[int, int], stuff: np.ndarray | None = None,
                  ids: tuple[int, ...] | None = None) -> np.ndarray:
    """Per-pixel class ids (H, W) uint8: objects as `ids[cls]` (default cls + 1), else `stuff` (default 0);
    difficult objects and a 1-pixel object boundary band (as in VOC) are IGNORE."""
    out = np.zeros(shape, np.uint8) if stuff is None else stuff.copy()
    for o in objs:
        out[o.mask] = IGNORE if o.difficult else (o.cls + 1 if ids is None else ids[o.cls])
    edges = np.zeros(shape, bool)
    for o in objs:
        m = o.mask
        inner = m.copy()
        inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        edges |= m & ~inner
    out[edges] = IGNORE
    return out


def voc_xml(name: str, folder: str, size: int, objs: list[SceneObject], class_names: tuple[str, ...]) -> bytes:
    """A PASCAL VOC annotation (1-based inclusive pixel boxes)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{name}.jpg"
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "hier-aug demo world"
    sz = ET.SubElement(root, "size")
    for tag, v in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "0"
    for o in objs:
        x0, y0, x1, y1 = _bbox(o.mask)
        ob = ET.SubElement(root, "object")
        ET.SubElement(ob, "name").text = class_names[o.cls]
        ET.SubElement(ob, "pose").text = "Unspecified"
        ET.SubElement(ob, "truncated").text = "0"
        ET.SubElement(ob, "difficult").text = str(int(o.difficult))
        bb = ET.SubElement(ob, "bndbox")
        for tag, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ET.SubElement(bb, tag).text = str(v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (flattened x, y in pixel-edge coordinates) tracing a binary mask (H, W)."""
    padded = np.pad(mask.astype(np.float64), 1)
    polys = []
    for line in contourpy.contour_generator(z=padded).lines(0.5):
        if len(line) >= 4:
            xy = line[:-1] - 1 + 0.5  # undo padding; pixel centres -> pixel-edge coordinates
            polys.append([round(float(v), 2) for v in xy.reshape(-1)])
    return polys


def _write_imagefolder(root: Path, spec: WorldSpec, counts: Counts, rng: np.random.Generator) -> int:
    n = 0
    for split, per in (("train", counts.cls_train_per_class), ("val", counts.cls_val_per_class)):
        for cls, name in enumerate(spec.class_names):
            for i in range(per):
                _save_jpeg(classification_image(spec, cls, rng), root / "imagefolder" / split / name / f"{split}_{cls:02d}_{i:05d}.jpg")
                n += 1
    return n


def _write_colour(root: Path, spec: WorldSpec, counts: Counts, rng: np.random.Generator) -> int:
    n = 0
    for split, per in (("train", counts.colour_train_per_class), ("val", counts.colour_val_per_class)):
        for cls, (shape, band) in enumerate(COLOUR_CLASSES):
            for i in range(per):
                _save_jpeg(colour_image(spec.cls_size, cls, rng), root / "colour" / split / f"{shape}-{band}" / f"{split}_{cls:02d}_{i:05d}.jpg")
                n += 1
    return n


def _write_voc(root: Path, spec: WorldSpec, counts: Counts, rng: np.random.Generator) -> int:
    pal = voc_palette()
    n = 0
    for year, splits in (("2007", (("trainval", counts.voc07_trainval), ("test", counts.voc07_test))),
                         ("2012", (("trainval", counts.voc12_trainval),))):
        base = root / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for split, count in splits:
            ids = []
            for i in range(count):
                name = f"{year}_{split}_{i:06d}"
                img, objs = scene(spec, rng)
                _save_jpeg(img, base / "JPEGImages" / f"{name}.jpg")
                (base / "Annotations" / f"{name}.xml").write_bytes(voc_xml(name, f"VOC{year}", img.shape[0], objs, spec.class_names))
                if year == "2012":
                    labels = semantic_mask(objs, img.shape[:2])
                    seg = Image.fromarray(labels, mode="P")
                    seg.putpalette(pal)
                    (base / "SegmentationClass").mkdir(exist_ok=True)
                    seg.save(base / "SegmentationClass" / f"{name}.png")
                    (base / "SegmentationClassAug").mkdir(exist_ok=True)  # SBD-converted masks: plain label PNGs
                    Image.fromarray(labels, mode="L").save(base / "SegmentationClassAug" / f"{name}.png")
                ids.append(name)
                n += 1
            (base / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
            if year == "2012":
                seg_dir = base / "ImageSets/Segmentation"
                seg_dir.mkdir(parents=True, exist_ok=True)
                n_val = min(counts.voc12_seg_val, len(ids) // 2)
                (seg_dir / "train.txt").write_text("".join(f"{i}\n" for i in ids[n_val:]))
                (seg_dir / "val.txt").write_text("".join(f"{i}\n" for i in ids[:n_val]))
                (seg_dir / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
                (seg_dir / "aug.txt").write_text("".join(f"{i}\n" for i in ids[n_val:]))  # SBD aug: no val image
    return n


def _write_coco(root: Path, spec: WorldSpec, counts: Counts, rng: np.random.Generator) -> int:
    ann_dir = root / "coco" / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    categories = [{"id": c + 1, "name": n, "supercategory": "object"} for c, n in enumerate(spec.class_names)]
    n = 0
    for split, count in (("train2017", counts.coco_train), ("val2017", counts.coco_val)):
        images, anns = [], []
        for i in range(count):
            img, objs = scene(spec, rng)
            file_name = f"{i + 1:012d}.jpg"
            _save_jpeg(img, root / "coco" / split / file_name)
            images.append({"id": i + 1, "file_name": file_name, "height": img.shape[0], "width": img.shape[1]})
            for o in objs:
                polys = mask_polygons(o.mask)
                if o.difficult or not polys:
                    continue
                x0, y0, x1, y1 = _bbox(o.mask)
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": o.cls + 1,
                             "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": int(o.mask.sum()),
                             "segmentation": polys, "iscrowd": 0})
            n += 1
        info = {"description": "hier-aug demo world", "version": "1.0"}
        doc = {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": categories}
        (ann_dir / f"instances_{split}.json").write_text(json.dumps(doc))
    return n


def _street_base(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A street-like background (sky, building, road bands) and its stuff train ids (H, W)."""
    img = background(size, rng)
    stuff = np.empty((size, size), np.uint8)
    cuts = sorted(rng.uniform(0.2, 0.8, size=2) * size)
    bands = (slice(0, int(cuts[0])), slice(int(cuts[0]), int(cuts[1])), slice(int(cuts[1]), size))
    for band, tid, colour in zip(bands, CITYSCAPES_STUFF_IDS, ((120, 170, 230), (110, 100, 95), (80, 80, 85))):
        stuff[band] = tid
        img[band] = 0.6 * img[band] + 0.4 * np.array(colour)
    return img, stuff


def _write_cityscapes(root: Path, spec: WorldSpec, counts: Counts, rng: np.random.Generator) -> int:
    ids = tuple(CITYSCAPES_OBJECT_IDS[c % len(CITYSCAPES_OBJECT_IDS)] for c in range(spec.num_classes))
    n = 0
    for split, count in (("train", counts.cityscapes_train), ("val", counts.cityscapes_val)):
        cities = CITYSCAPES_CITIES[split]
        for i in range(count):
            city = cities[i % len(cities)]
            base, stuff = _street_base(spec.scene_size, rng)
            img, objs = scene(spec, rng, base=base)
            stem = f"{city}_{i:06d}_000019"
            for sub, suffix, arr in (("leftImg8bit", "leftImg8bit", img),
                                     ("gtFine", "gtFine_labelTrainIds", semantic_mask(objs, img.shape[:2], stuff, ids))):
                path = root / "cityscapes" / sub / split / city / f"{stem}_{suffix}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)
            n += 1
    return n


# a part's random stream is seeded by its position here: new parts go at the end
WRITERS = {"imagefolder": _write_imagefolder, "voc": _write_voc, "coco": _write_coco, "cityscapes": _write_cityscapes,
           "colour": _write_colour}


def generate(root: str | Path, spec: WorldSpec = WorldSpec(), counts: Counts = Counts(),
             parts: tuple[str, ...] = tuple(WRITERS), overwrite: bool = False) -> dict:
    """Write the world under `root`; every part draws from its own seeded stream, so a part's
    content does not depend on which other parts are written. Returns the summary written to world.json."""
    root = Path(root)
    unknown = set(parts) - set(WRITERS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {sorted(WRITERS)}")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True (--overwrite) to replace it")
        if not (root / "world.json").is_file():
            raise FileExistsError(f"{root} holds files but no demo world (no world.json): --overwrite only replaces a "
                                  "folder this tool wrote; choose an empty or new folder")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for part in tqdm(parts, desc="demo world", unit="part"):
        rng = np.random.default_rng([spec.seed, list(WRITERS).index(part)])
        written[part] = WRITERS[part](root, spec, counts, rng)
    summary = {"spec": asdict(spec), "counts": asdict(counts), "images": written}
    (root / "world.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
