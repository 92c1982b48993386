"""The generated demo world is valid in each real on-disk format and deterministic."""
import hashlib
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from benchmarks.demo_world import VOC_CLASSES

ROOT = Path(__file__).resolve().parents[1]


def test_imagefolder_layout(demo_world):
    for split in ("train", "val"):
        classes = sorted(p.name for p in (demo_world / "imagefolder" / split).iterdir())
        assert classes == sorted(VOC_CLASSES[:4])
        for c in classes:
            files = list((demo_world / "imagefolder" / split / c).glob("*.jpg"))
            assert files and Image.open(files[0]).size == (96, 96)


def test_colour_split_classes_are_shape_and_hue_band(demo_world):
    """Each colour-split class folder holds its shape in its hue band: the hue of the object's saturated,
    bright pixels (the object's foreground colour; backgrounds are at most 0.5 saturated) lies within
    +-0.04 of the band's centre (+0.02 for JPEG), and the two shapes of a band differ only in shape."""
    from benchmarks.demo_world.render import COLOUR_BANDS

    classes = sorted(p.name for p in (demo_world / "colour/train").iterdir())
    assert classes == sorted(f"{s}-{b}" for s in ("circle", "square") for b in COLOUR_BANDS)
    for split in ("train", "val"):
        for name in classes:
            band = COLOUR_BANDS[name.split("-")[1]]
            files = sorted((demo_world / "colour" / split / name).glob("*.jpg"))
            assert len(files) == (12 if split == "train" else 8)
            for f in files[:4]:
                hsv = np.asarray(Image.open(f).convert("HSV"), dtype=np.float64) / 255.0
                fg = (hsv[..., 1] > 0.53) & (hsv[..., 2] > 0.55)
                assert fg.sum() > 50, f
                h = hsv[..., 0][fg]
                dist = np.abs(((h - band) + 0.5) % 1.0 - 0.5)  # circular distance to the band centre
                assert np.median(dist) < 0.06, (f, float(np.median(dist)))


def test_adding_the_colour_split_left_the_other_parts_as_they_were(tmp_path):
    """A part's images come from its own seeded stream: the shape split written alone equals the shape
    split written with the colour split (the world users had stays as it is)."""
    from benchmarks.demo_world import WorldSpec, generate
    from benchmarks.demo_world.formats import Counts

    counts = Counts(cls_train_per_class=2, cls_val_per_class=1, colour_train_per_class=2, colour_val_per_class=1)
    generate(tmp_path / "a", WorldSpec(seed=0), counts, ("imagefolder",))
    generate(tmp_path / "b", WorldSpec(seed=0), counts, ("imagefolder", "colour"))
    a, b = _digest(tmp_path / "a/imagefolder"), _digest(tmp_path / "b/imagefolder")
    assert a == b and len(a) == 6 * 3


@pytest.mark.parametrize("year,split", [("2007", "trainval"), ("2007", "test"), ("2012", "trainval")])
def test_voc_xml_valid(demo_world, year, split):
    base = demo_world / f"VOC{year}"
    ids = (base / "ImageSets/Main" / f"{split}.txt").read_text().split()
    assert ids
    n_obj = 0
    for i in ids:
        root = ET.parse(base / "Annotations" / f"{i}.xml").getroot()
        w, h = int(root.find("size/width").text), int(root.find("size/height").text)
        assert Image.open(base / "JPEGImages" / f"{i}.jpg").size == (w, h)
        for obj in root.findall("object"):
            assert obj.find("name").text in VOC_CLASSES
            bb = [int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= bb[0] <= bb[2] <= w and 1 <= bb[1] <= bb[3] <= h
            assert obj.find("difficult").text in ("0", "1")
            n_obj += 1
    assert n_obj >= len(ids)


def test_coco_json_valid(demo_world):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    for split in ("train2017", "val2017"):
        coco = COCO(str(demo_world / "coco/annotations" / f"instances_{split}.json"))
        assert coco.getAnnIds()
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.loadImgs(ann["image_id"])[0]
            assert (demo_world / "coco" / split / img["file_name"]).exists()
            m = coco.annToMask(ann)
            assert m.shape == (img["height"], img["width"]) and m.sum() > 0
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h
            rle = mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"])
            assert mask_utils.area(mask_utils.merge(rle)) > 0.5 * ann["area"]


def test_segmentation_masks_valid(demo_world):
    base = demo_world / "VOC2012"
    for split in ("train", "val"):
        ids = (base / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
        assert ids
        for i in ids:
            im = Image.open(base / "SegmentationClass" / f"{i}.png")
            assert im.mode == "P"
            vals = set(np.unique(np.asarray(im)).tolist())
            assert vals <= set(range(0, 5)) | {255}
    train_ids = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in (demo_world / "cityscapes/gtFine/train").rglob("*labelTrainIds.png")]))
    assert set(train_ids.tolist()) <= set(range(19)) | {255}


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path):
    import runpy

    main = runpy.run_path(str(ROOT / "tools/make_demo_data.py"))["main"]  # the tool, in this process for speed
    args = ["--scale", "0.1", "--parts", "imagefolder", "voc", "coco"]
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert main([str(tmp_path / name), "--seed", str(seed), *args]) == 0
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert images and sum(a[k] != c.get(k) for k in images) > 0.9 * len(images)
    assert json.loads((tmp_path / "a/world.json").read_text())["spec"]["seed"] == 3


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x/keep.txt").write_text("user data")
    import contextlib
    import io
    import runpy

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = runpy.run_path(str(ROOT / "tools/make_demo_data.py"))["main"]([str(tmp_path / "x"), "--scale", "0.05"])
    assert rc == 2 and "not empty" in err.getvalue()
    assert (tmp_path / "x/keep.txt").exists()


def test_voc_boxes_frame_the_objects_pixels(demo_world):
    """Each class's boxes (1-based, inclusive) frame that class's pixels in the image's label mask: the pixels
    lie inside the box and span most of it (the mask leaves the objects' 1-pixel boundary band, thin tips
    included, and difficult objects to ignore)."""
    import numpy as np

    base = demo_world / "VOC2012"
    checked = 0
    for xml in sorted((base / "Annotations").glob("*.xml")):
        labels = np.array(Image.open(base / "SegmentationClassAug" / f"{xml.stem}.png"))
        boxes = {}
        for obj in ET.parse(xml).getroot().findall("object"):
            if obj.find("difficult").text == "0":
                bb = [int(obj.find(f"bndbox/{k}").text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
                c = VOC_CLASSES.index(obj.find("name").text) + 1
                old = boxes.get(c, bb)
                boxes[c] = [min(old[0], bb[0]), min(old[1], bb[1]), max(old[2], bb[2]), max(old[3], bb[3])]
        for c, (x0, y0, x1, y1) in boxes.items():
            ys, xs = np.nonzero(labels == c)
            if len(xs) < 20:  # a sliver left by occlusion
                continue
            assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1, (xml.name, c)
            assert xs.max() - xs.min() >= 0.6 * (x1 - x0) and ys.max() - ys.min() >= 0.6 * (y1 - y0), (xml.name, c)
            checked += 1
    assert checked >= 30
