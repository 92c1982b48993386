"""The demo world with the quirks real datasets have (`make_demo_data.py OUT --quirks`): the fixture every
reader and the data check are tested on.

`add_quirks(root)` changes a generated world in place (its imagefolder, VOC2007, VOC2012 and coco parts)
with the quirks the runs accept, and writes each quirk the runs refuse as its own small dataset under
`root/refused/<quirk>/`, so one refusal never hides another. Every quirk is one `Quirk` entry: the real
dataset that has it, its files, what the runs do with it, and the line the data check prints (an error
or a warning). The list is written to `root/quirks.json`.
"""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Quirk:
    name: str
    real: str      # a real dataset that has it
    files: tuple[str, ...]  # relative to the world root
    runs: str      # what the runs do
    severity: str  # the data check's line: "error" or "warning"
    check: str     # a phrase of that line


def _first(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.suffix == ".jpg" and not p.name.startswith("quirk"))[0]


def _replace(src: Path, name: str, save) -> Path:
    """Re-save image `src` (removed) as `name` in its folder with `save(rgb array, path)`."""
    rgb = np.asarray(Image.open(src).convert("RGB"))
    dst = src.with_name(name)
    save(rgb, dst)
    src.unlink()
    return dst


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _alpha(rgb: np.ndarray) -> np.ndarray:
    """Alpha (H, W): transparent left half, opaque right half."""
    a = np.full(rgb.shape[:2], 255, np.uint8)
    a[:, : rgb.shape[1] // 2] = 0
    return a


def _palette_transparent(rgb: np.ndarray, path: Path) -> None:
    im = Image.fromarray(rgb).quantize(255)
    arr = np.asarray(im).copy()
    arr[:, : arr.shape[1] // 2] = 255  # index 255: the transparent entry
    out = Image.fromarray(arr, mode="P")
    out.putpalette(im.getpalette()[: 255 * 3] + [0, 0, 0])
    out.save(path, transparency=255)


IMAGE_MODES = {  # file name -> writer(rgb, path): every mode the one reader converts
    "quirk_png_as_jpeg.JPEG": lambda rgb, p: Image.fromarray(rgb).save(p, format="PNG"),
    "quirk_cmyk.jpg": lambda rgb, p: Image.fromarray(rgb).convert("CMYK").save(p, quality=95),
    "quirk_grey16.png": lambda rgb, p: Image.fromarray(_grey(rgb).astype(np.uint16) * 257).save(p),
    "quirk_grey16.pgm": lambda rgb, p: Image.fromarray(_grey(rgb).astype(np.uint16) * 257).save(p),
    "quirk_grey32.tif": lambda rgb, p: Image.fromarray((_grey(rgb).astype(np.int64) * (2**31 - 1) // 255).astype(np.int32)).save(p),
    "quirk_palette_transparent.png": _palette_transparent,
    "quirk_rgba.png": lambda rgb, p: Image.fromarray(np.dstack([rgb, _alpha(rgb)]), mode="RGBA").save(p),
    "quirk_la.png": lambda rgb, p: Image.fromarray(np.dstack([_grey(rgb), _alpha(rgb)]), mode="LA").save(p),
    "quirk_grey.jpg": lambda rgb, p: Image.fromarray(_grey(rgb)).save(p, quality=95),
}
STRAY = ("Thumbs.db", ".DS_Store", "notes.txt")


def _imagefolder(root: Path) -> list[Quirk]:
    train, val = root / "imagefolder/train", root / "imagefolder/val"
    classes = sorted(p.name for p in train.iterdir())
    out, rel = [], lambda p: str(p.relative_to(root))
    for i, (name, save) in enumerate(IMAGE_MODES.items()):
        folder = train / classes[i % len(classes)]
        f = _replace(_first(folder), name, save)
        out.append((name, rel(f)))
    quirks = [
        Quirk("png_as_jpeg", "ImageNet (n02105855_2933.JPEG is a PNG)", (out[0][1],), "read by content", "warning", "PNG data"),
        Quirk("cmyk_jpeg", "ImageNet (22 CMYK JPEGs in train)", (out[1][1],), "converted to RGB", "warning", "CMYK converted"),
        Quirk("grey16_png", "16-bit scans and depth maps (NYU Depth v2)", (out[2][1],), "scaled to 8 bits", "warning", "16-bit greyscale"),
        Quirk("grey16_pgm", "16-bit PGMs of scientific cameras", (out[3][1],), "scaled to 8 bits", "warning", "32-bit integer greyscale"),
        Quirk("grey32_tif", "32-bit TIFFs of microscopy sets", (out[4][1],), "scaled to 8 bits", "warning", "32-bit integer greyscale"),
        Quirk("palette_transparency", "web-scraped sets (WebVision, Open Images PNGs)", (out[5][1],), "composited over white",
              "warning", "composited over white"),
        Quirk("rgba", "web-scraped sets (WebVision, Open Images PNGs)", (out[6][1],), "composited over white", "warning",
              "composited over white"),
        Quirk("la", "web-scraped greyscale PNGs with alpha", (out[7][1],), "composited over white", "warning", "composited over white"),
        Quirk("greyscale_jpeg", "ImageNet (about 1% of train is greyscale)", (out[8][1],), "repeated over RGB", "none", ""),
    ]
    stray = []
    for name in STRAY:
        (train / classes[0] / name).write_bytes(b"not an image\n")
        stray.append(rel(train / classes[0] / name))
    quirks.append(Quirk("stray_files", "folders copied from Windows/macOS (Thumbs.db, .DS_Store), README files", tuple(stray),
                        "ignored (not image files)", "warning", "not an image file"))
    shutil.rmtree(val / classes[-1])
    quirks.append(Quirk("train_class_absent_from_val", "test splits without some classes (iNaturalist, Places)",
                        (f"imagefolder/val/{classes[-1]}",), "scored on the classes val has; the absent one is null per class",
                        "warning", "no images in"))
    return quirks


def _small_imagefolder(src: Path, dst: Path, per_class: int = 3) -> None:
    for split in ("train", "val"):
        for cls in sorted((src / split).iterdir())[:2]:
            (dst / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:per_class]:
                shutil.copy(f, dst / split / cls.name / f.name)


def _refused_imagefolders(root: Path) -> list[Quirk]:
    src, base = root / "imagefolder", root / "refused"
    quirks = []
    d = base / "empty_class"
    _small_imagefolder(src, d)
    (d / "train/zz_empty").mkdir()
    quirks.append(Quirk("empty_class_folder", "ImageNet copies with a failed class download", ("refused/empty_class/train/zz_empty",),
                        "refused, naming the folder", "error", "holds no image"))
    d = base / "dangling_symlink"
    _small_imagefolder(src, d)
    cls = sorted((d / "train").iterdir())[0]
    os.symlink(d / "nowhere.jpg", cls / "dangling.jpg")
    quirks.append(Quirk("dangling_symlink", "symlinked ImageNet trees after a move (ILSVRC class subsets)",
                        (str((cls / "dangling.jpg").relative_to(root)),), "pretraining skips it as unreadable (budget); "
                        "the probes stop naming it", "error", "dangling symlink"))
    d = base / "val_class_not_in_train"
    _small_imagefolder(src, d)
    extra = d / "val/zz_extra"
    shutil.copytree(sorted((d / "val").iterdir())[0], extra)
    quirks.append(Quirk("val_class_not_in_train", "a renamed or extra class folder in a copied val split",
                        ("refused/val_class_not_in_train/val/zz_extra",), "refused, naming the class", "error", "lacks"))
    return quirks


def _voc_boxes(root: Path) -> list[Quirk]:
    """Three boxes added to the first VOC2007 trainval annotation."""
    ann = root / "VOC2007/Annotations" / f"{(root / 'VOC2007/ImageSets/Main/trainval.txt').read_text().split()[0]}.xml"
    tree = ET.parse(ann)
    size = int(tree.getroot().findtext("size/width"))
    for (x0, y0, x1, y1) in ((20, 20, 19, 40), (size - 30, 10, size + 2, 40), (10, size - 40, 60, size + 40)):
        ob = ET.SubElement(tree.getroot(), "object")
        ET.SubElement(ob, "name").text = tree.getroot().findtext("object/name")
        ET.SubElement(ob, "difficult").text = "0"
        bb = ET.SubElement(ob, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(bb, tag).text = str(v)
    ET.indent(tree.getroot())
    tree.write(ann)
    rel = str(ann.relative_to(root))
    return [Quirk("degenerate_box", "PASCAL VOC (a few zero-width boxes in VOC2012 trainval)", (rel,), "dropped, counted in the "
                  "run's record", "warning", "zero-area box"),
            Quirk("box_slightly_outside", "PASCAL VOC (xmax = width + 1 in some files)", (rel,), "clipped, counted in the run's record",
                  "warning", "image by 2 px: clipped"),
            Quirk("box_far_outside", "hand-made or converted annotations", (rel,), "clipped, counted in the run's record", "error",
                  "image by 40 px: clipped")]


def _rgb_mask(root: Path) -> list[Quirk]:
    src, d = root / "VOC2012", root / "refused/rgb_mask/VOC2012"
    ids = (src / "ImageSets/Segmentation/train.txt").read_text().split()[:3] + \
        (src / "ImageSets/Segmentation/val.txt").read_text().split()[:2]
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (d / sub).mkdir(parents=True)
    for i in ids:
        shutil.copy(src / "JPEGImages" / f"{i}.jpg", d / "JPEGImages")
        shutil.copy(src / "SegmentationClass" / f"{i}.png", d / "SegmentationClass")
    (d / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids[:3]))
    (d / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in ids[3:]))
    mask = d / "SegmentationClass" / f"{ids[0]}.png"
    Image.open(mask).convert("RGB").save(mask)  # the palette's colours, as a colour image
    return [Quirk("rgb_mask", "VOC masks re-saved by an image editor as RGB", (str(mask.relative_to(root)),),
                  "refused before training, naming the mask", "error", "RGB colour mask")]


def _coco(root: Path) -> list[Quirk]:
    ann = root / "coco/annotations/instances_train2017.json"
    doc = json.loads(ann.read_text())
    first = doc["images"][0]
    h, w = first["height"], first["width"]
    counts = [0] + [10, h - 10] * w  # uncompressed RLE, column-major: the top 10 rows, a crowd band
    doc["annotations"].append({"id": max(a["id"] for a in doc["annotations"]) + 1, "image_id": first["id"], "category_id": 1,
                               "iscrowd": 1, "bbox": [0, 0, float(w), 10.0], "area": 10 * w,
                               "segmentation": {"counts": counts, "size": [h, w]}})
    src = root / "coco/train2017" / first["file_name"]
    new_id = max(im["id"] for im in doc["images"]) + 1
    name = f"{new_id:012d}.jpg"
    shutil.copy(src, src.with_name(name))
    doc["images"].append(dict(first, id=new_id, file_name=name))
    ann.write_text(json.dumps(doc))
    rel = str(ann.relative_to(root))
    return [Quirk("coco_crowd", "COCO (about 1% of train2017's annotations are crowd regions)", (rel,),
                  "not trained on; ignored regions in evaluation", "warning", "crowd annotation"),
            Quirk("coco_image_without_annotations", "COCO (1021 train2017 images have none)", (rel,),
                  "left out of training (detectron2's FILTER_EMPTY_ANNOTATIONS)", "warning", "without annotations")]


IGNORE_LABELS = Quirk("ignore_labels", "PASCAL VOC (255 on object boundaries), Cityscapes (255 = void)",
                      ("VOC2012/SegmentationClass", "cityscapes/gtFine"), "ignored in the loss and the metric", "none", "")


def add_quirks(root: str | Path) -> list[dict]:
    """Apply every quirk to the generated world at `root` (it needs the imagefolder, voc and coco parts);
    returns the quirk list, also written to `root/quirks.json`."""
    root = Path(root)
    for part in ("imagefolder", "VOC2007", "VOC2012", "coco"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"{root / part} is missing: --quirks needs the imagefolder, voc and coco parts")
    quirks = _refused_imagefolders(root) + _imagefolder(root) + _voc_boxes(root) + _rgb_mask(root) + _coco(root) + [IGNORE_LABELS]
    out = [asdict(q) for q in quirks]
    (root / "quirks.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
