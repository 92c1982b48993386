"""Data shaped like real datasets: every image mode through the one reader (against hand conversions), splits
whose class sets differ (labels by class name), boxes that are not boxes, colour masks, and the quirks world
(`make_demo_data.py --quirks`): for each quirk, what the runs do and the line the data check prints."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pretrain.data.images import read_rgb

from .conftest import ROOT
from .test_pretrain_run import TINY


def _rgb(path):
    return read_rgb(path).permute(1, 2, 0).numpy()


# ---- 3: image modes, each against a conversion written out by hand ------------------------------------------------

def test_16_and_32_bit_greyscale_are_scaled_by_their_range(tmp_path):
    """16-bit: round(v x 255 / 65535); 16-bit PGM (opens as I): the same; 32-bit TIFF (I, values past 65535):
    round(v x 255 / (2^31 - 1)); float TIFF (F): round(clip(v, 0, 1) x 255)."""
    v16 = np.array([[0, 257, 1000, 65535]], np.uint16)
    Image.fromarray(v16).save(tmp_path / "a.png")
    Image.fromarray(v16).save(tmp_path / "a.pgm")
    for f in ("a.png", "a.pgm"):
        assert _rgb(tmp_path / f)[0, :, 0].tolist() == [0, 1, 4, 255]  # 1000 x 255 / 65535 = 3.89
    v32 = np.array([[0, 2**30, 2**31 - 1, 70000]], np.int32)
    Image.fromarray(v32).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I"
    assert _rgb(tmp_path / "b.tif")[0, :, 0].tolist() == [0, 128, 255, 0]  # 2^30 -> 127.50000006 -> 128; 70000 -> 0.0083
    Image.fromarray(np.array([[0.0, 0.25, 1.0, 1.5]], np.float32)).save(tmp_path / "c.tif")
    assert _rgb(tmp_path / "c.tif")[0, :, 0].tolist() == [0, 64, 255, 255]  # 63.75 -> 64
    assert (_rgb(tmp_path / "c.tif") == _rgb(tmp_path / "c.tif")[..., :1]).all()  # grey in every channel


def test_cmyk_palette_and_alpha_against_hand_conversions(tmp_path):
    """CMYK (100, 50, 0, 30): R = 255 (1 - 100/255)(1 - 30/255) = 136.76 -> 137, G 180.88 -> 181, B 225.
    Transparent pixels over white: RGBA (100, 0, 0, 128) -> (100 x 128 + 255 x 127) / 255 = 177.2, 127.0, 127.0."""
    Image.new("CMYK", (2, 2), (100, 50, 0, 30)).save(tmp_path / "c.tif")
    assert _rgb(tmp_path / "c.tif")[0, 0].tolist() == [137, 181, 225]
    Image.new("CMYK", (8, 8), (100, 50, 0, 30)).save(tmp_path / "c.jpg", quality=100)
    raw = np.asarray(Image.open(tmp_path / "c.jpg")).astype(float) / 255  # the decoded CMYK values, converted here
    hand = np.rint(255 * (1 - raw[..., :3]) * (1 - raw[..., 3:]))
    assert np.abs(_rgb(tmp_path / "c.jpg") - hand).max() <= 0
    rgba = np.array([[[100, 0, 0, 128], [10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    got = _rgb(tmp_path / "a.png").astype(int)
    assert np.abs(got[0, 0] - [177, 127, 127]).max() <= 1 and got[0, 1].tolist() == [255] * 3 and got[0, 2].tolist() == [10, 20, 30]
    Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), mode="LA").save(tmp_path / "la.png")
    assert _rgb(tmp_path / "la.png")[0].tolist() == [[255] * 3, [50] * 3]
    p = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    p.putpalette([200, 0, 0, 0, 150, 0] + [0] * 762)
    p.save(tmp_path / "p.png", transparency=0)
    assert _rgb(tmp_path / "p.png")[0].tolist() == [[255] * 3, [0, 150, 0]]  # index 0 transparent, index 1 green
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.png")
    assert _rgb(tmp_path / "b.png")[0].tolist() == [[0] * 3, [255] * 3]
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(tmp_path / "png_named.JPEG", format="PNG")  # ImageNet's PNG-as-JPEG
    assert _rgb(tmp_path / "png_named.JPEG")[0].tolist() == [[0] * 3, [1] * 3]


def test_every_dataset_reads_a_16_bit_picture_as_its_8_bit_twin(tmp_path):
    """The same picture saved as 16-bit and 8-bit greyscale PNG gives the same pretraining views (the old decoder
    clipped 16 bits: normalised mean 2.40 against 0.82), probe images, invariance images and data-check decode."""
    from pretrain.data.views import MultiViewDataset, MultiViewTransform, PairSpec
    from pretrain.transforms.augment import AugPipeline
    from transfer.classification.datasets import image_folder

    grey = (np.add.outer(np.arange(48), np.arange(48)) * 2 + 20).astype(np.uint8)
    for name, arr in (("eight", grey), ("sixteen", grey.astype(np.uint16) * 257)):
        (tmp_path / name / "c").mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / name / "c" / "x.png")
    pipe = AugPipeline(size=32, types=("crop", "jitter"), jitter_p=1.0)
    views = {}
    for name in ("eight", "sixteen"):
        ds = MultiViewDataset(str(tmp_path / name), MultiViewTransform([PairSpec(4, (pipe, pipe))]), seed=0)
        views[name] = ds[(0, 0)][0]
        assert ds[(0, 0)][3] == []  # nothing skipped
    for a, b in zip(views["eight"], views["sixteen"]):
        torch.testing.assert_close(a, b)
    one, two = (np.asarray(image_folder(tmp_path / n)[0][0]) for n in ("eight", "sixteen"))
    assert (one == two).all() and (one[..., 0] == grey).all()


# ---- 1: splits whose class sets differ: labels by class name -----------------------------------------------------

@pytest.fixture(scope="module")
def split_world(demo_world, tmp_path_factory):
    """val = a copy of train (so k = 1 finds each image itself), and the same without its second class."""
    import shutil

    root = tmp_path_factory.mktemp("splits")
    for name in ("full", "less"):
        shutil.copytree(demo_world / "imagefolder/train", root / name / "train", ignore=lambda d, f: sorted(f)[12:])
        shutil.copytree(root / name / "train", root / name / "val")
    shutil.rmtree(root / "less/val/bicycle")
    return root


def _probe(task, data, out, *extra):
    from transfer.classification.run import main

    rc = main(task, ["--weights", "random", "--arch", "resnet18", "--data", str(data), "--size", "32", "--workers", "0",
                     "--output", str(out), *extra])
    return rc, (json.loads((out / "metrics.json").read_text()) if rc == 0 else None)


def test_knn_scores_a_val_split_without_one_class_by_class_name(split_world, tmp_path):
    """k = 1 on val = train minus one class: every image finds itself, 100 (label shift gave 20 before); the
    absent class is null per class and listed."""
    rc, m = _probe("knn", split_world / "less", tmp_path / "k", "--k", "1")
    assert rc == 0 and m["metrics"]["top1"] == 100.0
    assert m["absent_classes"] == ["bicycle"] and m["by_k"]["k1"]["per_class"][1] is None
    assert [a for a in m["by_k"]["k1"]["per_class"] if a is not None] == [100.0] * 3


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_linear_probe_on_a_val_split_without_one_class_scores_the_others_as_with_every_class(split_world, tmp_path, fast):
    """The probe trains on the same train split either way; only evaluation differs. So each present class's
    accuracy equals its accuracy in the full run, and top-1 is their image-weighted mean."""
    extra = ["--fast", "--epochs", "20"] if fast else ["--epochs", "2", "--preset", "demo"]
    _, full = _probe("linear_cls", split_world / "full", tmp_path / "f", *extra)
    rc, less = _probe("linear_cls", split_world / "less", tmp_path / "l", *extra)
    assert rc == 0 and less["absent_classes"] == ["bicycle"] and less["per_class"][1] is None
    keep = [i for i in range(4) if i != 1]
    assert [less["per_class"][i] for i in keep] == [full["per_class"][i] for i in keep]
    assert less["metrics"]["top1"] == pytest.approx(sum(full["per_class"][i] for i in keep) / 3, abs=1e-3)


@pytest.mark.parametrize("task", ["knn", "linear_cls", "colour_probe", "invariance"])
def test_a_val_class_that_train_lacks_stops_every_probe_naming_it(demo_world, tmp_path, task, capsys):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(demo_world / "imagefolder/train", root / "train", ignore=lambda d, f: sorted(f)[3:])
    shutil.copytree(root / "train", root / "val")
    shutil.copytree(root / "val/aeroplane", root / "val/zz_extra")
    rc, _ = _probe(task, root, tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 1 and "zz_extra" in err and "lacks" in err and not (tmp_path / "out/run.json").exists()


# ---- 4: boxes that are not boxes -------------------------------------------------------------------------------------

def test_box_problems_by_hand():
    from transfer.datacheck import box_problems

    assert box_problems(10, 10, 20, 20, 64, 64) == []
    assert box_problems(19, 19, 19, 40, 64, 64)[0][1] == "warning" and "zero-area" in box_problems(19, 19, 19, 40, 64, 64)[0][0]
    (p, sev), = box_problems(30, 10, 66, 40, 64, 64)
    assert sev == "warning" and "by 2 px" in p and "clipped" in p
    (p, sev), = box_problems(9, 20, 60, 104, 64, 64)
    assert sev == "error" and "by 40 px" in p
    (p, sev), = box_problems(70, 10, 80, 20, 64, 64)
    assert sev == "error" and "outside" in p and "dropped" in p


# ---- 7 and 5: the quirks world: each quirk's outcome in the runs and its line in the data check ------------------------

@pytest.fixture(scope="module")
def quirks_world(tmp_path_factory):
    from benchmarks.demo_world import WorldSpec, generate
    from benchmarks.demo_world.formats import Counts
    from benchmarks.demo_world.quirks import add_quirks

    root = tmp_path_factory.mktemp("quirks")
    counts = Counts(cls_train_per_class=12, cls_val_per_class=4, voc07_trainval=8, voc07_test=4, voc12_trainval=8, voc12_seg_val=3,
                    coco_train=6, coco_val=3, cityscapes_train=2, cityscapes_val=1, colour_train_per_class=2, colour_val_per_class=1)
    generate(root, WorldSpec(num_classes=4, seed=0, cls_size=32, scene_size=64), counts)
    add_quirks(root)
    return root


# (data check task, the root it takes, relative to the world) of the file a quirk lives in
def _where(rel: str) -> tuple[str, str]:
    if rel.startswith("refused/rgb_mask"):
        return "voc_seg", "refused/rgb_mask/VOC2012"
    if rel.startswith("refused/"):
        return "cls", "/".join(rel.split("/")[:2])
    if rel.startswith("imagefolder"):
        return "cls", "imagefolder"
    return ("voc_det" if rel.startswith("VOC2007") else "coco_instseg"), "."


def test_the_data_check_reports_every_quirk_with_its_file_and_severity(quirks_world):
    from .test_bad_data import _check

    quirks = json.loads((quirks_world / "quirks.json").read_text())
    outputs = {}
    for q in quirks:
        if q["severity"] == "none":
            continue
        task, root = _where(q["files"][0])
        if (task, root) not in outputs:
            outputs[(task, root)] = _check(quirks_world / root, task)
        r = outputs[(task, root)]
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{q['severity']}: ") and q["check"] in ln]
        assert any(str(quirks_world / q["files"][0]) in ln for ln in lines), (q, r.stdout)
        assert r.returncode == (1 if any(ln.startswith("error: ") for ln in r.stdout.splitlines()) else 0)
    assert outputs[("cls", "imagefolder")].returncode == 0  # the accepted image quirks are warnings only
    assert outputs[("cls", "refused/empty_class")].returncode == 1


def test_each_refused_quirk_stops_its_run_naming_the_file(quirks_world, tmp_path, capsys):
    from transfer.datacheck import require_files

    for name in ("empty_class", "dangling_symlink", "val_class_not_in_train"):
        q = next(q for q in json.loads((quirks_world / "quirks.json").read_text()) if q["files"][0].startswith(f"refused/{name}/"))
        rc, _ = _probe("knn", quirks_world / "refused" / name, tmp_path / name, "--k", "1")
        err = capsys.readouterr().err
        assert rc == 1 and (quirks_world / q["files"][0]).name in err, (name, err)
    with pytest.raises(FileNotFoundError, match="RGB colour mask; expected an index or palette PNG"):
        require_files("voc_seg", quirks_world / "refused/rgb_mask/VOC2012")


def test_knn_on_the_quirks_split_equals_a_knn_written_out_on_hand_read_features(quirks_world, tmp_path):
    """Every image mode, stray files and a train class absent from val: `--task knn` equals features computed
    here (the reader, the eval crop written out, labels by class name from train's list) and votes in a loop."""
    from torchvision import models
    from torchvision.transforms.v2 import functional as TF

    root = quirks_world / "imagefolder"
    rc, m = _probe("knn", root, tmp_path / "k", "--k", "3")
    assert rc == 0
    classes = sorted(p.name for p in (root / "train").iterdir())
    torch.manual_seed(0)
    net = models.resnet18(weights=None).eval()
    net.fc = torch.nn.Identity()

    def feats(split):
        xs, ys = [], []
        for c in sorted(p.name for p in (root / split).iterdir()):
            for f in sorted((root / split / c).iterdir()):
                if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".tif"):
                    img = TF.center_crop(TF.resize(read_rgb(f), round(32 * 256 / 224), antialias=True), [32, 32])
                    xs.append(TF.normalize(img.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
                    ys.append(classes.index(c))
        with torch.no_grad():
            return torch.nn.functional.normalize(net(torch.stack(xs)), dim=1), ys

    (tf, ty), (vf, vy) = feats("train"), feats("val")
    assert len(ty) == 4 * 12 and sorted(set(vy)) == [0, 1, 2]  # the stray files left out; class 3 absent from val
    hits = 0
    for row, label in zip((vf @ tf.T).tolist(), vy):
        votes = [0.0] * 4
        for s, y in sorted(zip(row, ty), key=lambda p: -p[0])[:3]:
            votes[y] += math.exp(s / 0.07)
        hits += max(range(4), key=votes.__getitem__) == label
    assert m["metrics"]["top1"] == pytest.approx(100 * hits / len(vy), abs=1e-3) and m["absent_classes"] == [classes[3]]


def test_pretraining_reads_every_image_mode_of_the_quirks_world(quirks_world, tmp_path):
    from pretrain.config.config import load_config
    from pretrain.engine.trainer import Pretrainer

    cfg = load_config(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                      [*TINY, "train.max_steps=1", "data.workers=0", f"data.train={quirks_world / 'imagefolder/train'}",
                       f"train.output={tmp_path}", "optim.batch_size=48"])
    trainer = Pretrainer(cfg)
    assert len(trainer.dataset) == 48  # 4 classes x 12 images; the stray files are not samples
    assert trainer.run()["unreadable_images"] == []


def test_the_box_report_counts_what_detectron2_drops_and_clips(quirks_world):
    from transfer.datacheck import box_report

    r = box_report("voc_det", quirks_world, {"VOC2007/trainval"})
    ann = next(q for q in json.loads((quirks_world / "quirks.json").read_text()) if q["name"] == "degenerate_box")["files"][0]
    assert (r["dropped"], r["clipped"]) == (1, 2) and list(r["files"]) == [str(quirks_world / ann)]


# ---- 8-12: the smaller items ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seeds,needle", [([], "seeds is empty"), ([0, 0], "seeds repeats [0]"), ([1, 2, 1], "seeds repeats [1]")])
def test_a_suite_without_seeds_or_with_a_repeated_seed_is_refused(tmp_path, seeds, needle):
    import yaml

    from benchmarks.suite import SuiteError, load_suite

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"checkpoints": [{"name": "a", "path": "random"}], "tasks": {"knn": []},
                                                    "seeds": seeds}))
    with pytest.raises(SuiteError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_suite(tmp_path / "s.yaml")


def test_latex_escapes_every_special_character_of_a_name(tmp_path):
    """A checkpoint named `r#1 $5 {x} ~y ^z \\w & 50% a_b` appears in results.tex with every LaTeX special escaped."""
    import yaml

    from benchmarks.report import _latex
    from benchmarks.suite import load_suite

    name = "r#1 $5 {x} ~y ^z \\w & 50% a_b"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"checkpoints": [{"name": name, "path": "random"}], "tasks": {"knn": []},
                                                    "output": str(tmp_path / "o")}))
    tex = _latex(load_suite(tmp_path / "s.yaml"), [{"checkpoint": name, "task": "knn", "metric": "top1", "mean": 1.0, "std": 0.0,
                                                    "n": 1, "values": [1.0], "protocols": ["demo"], "dataset": None,
                                                    "stages": [4]}])
    want = r"r\#1 \$5 \{x\} \textasciitilde{}y \textasciicircum{}z \textbackslash{}w \& 50\% a\_b"
    assert any(line.startswith(want + " & ") for line in tex.splitlines()), tex


def test_a_start_that_failed_before_its_first_step_does_not_hold_the_folder(demo_world, tmp_path):
    """A wrong data path fails after the folder is claimed; the corrected command into the same folder runs (it was
    refused, asking for --overwrite of a run that never ran a step). A run with a checkpoint stays protected."""
    from .test_run_identity import DEMO, _pretrain

    out = tmp_path / "run"
    rc, _, err = _pretrain(DEMO, tmp_path / "nowhere", out)
    assert rc == 1 and json.loads((out / "run.json").read_text())["status"] == "running"
    data = tmp_path / "data"
    for cls in sorted(p.name for p in (demo_world / "imagefolder/train").iterdir())[:2]:
        (data / cls).mkdir(parents=True)
        for img in sorted((demo_world / "imagefolder/train" / cls).iterdir())[:4]:
            (data / cls / img.name).symlink_to(img)
    rc, out_text, err = _pretrain(DEMO, data, out, "train.max_steps=1")
    assert rc == 0, err[-2000:]
    rec = json.loads((out / "run.json").read_text())
    assert rec["identity"]["data"]["train"] == str(data) and (out / "last.pth").is_file()
    assert rec["history"][0]["replaced"] == "a start that never completed a step"
    rc, _, err = _pretrain(DEMO, tmp_path / "nowhere", out)  # a run that stepped is protected as before
    assert rc == 1 and "other inputs" in err


@pytest.mark.detectron2
def test_more_processes_than_visible_gpus_is_refused_before_anything_starts(demo_world, tmp_path, monkeypatch, capsys):
    from transfer.detectron2.train_net import main

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rc = main("voc_det", ["--weights", "random", "--config", "demo_voc_R_18_FPN", "--data-root", str(demo_world),
                          "--num-gpus", "2", "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "--num-gpus 2" in err and "1 visible GPU(s)" in err and not (tmp_path / "r").exists()


def test_the_invariance_map_is_labelled_by_the_protocol_rule(demo_world, tmp_path):
    """16 images at 32 px are not the standard map: non-standard, with both changes listed."""
    import shutil

    root = tmp_path / "d"
    shutil.copytree(demo_world / "imagefolder", root)
    rc, m = _probe("invariance", root, tmp_path / "inv", "--images", "16")
    assert rc == 0 and m["protocol"] == "non-standard"
    assert m["protocol_changes"] == ["image size 224 -> 32", "images 256 -> 16"]
