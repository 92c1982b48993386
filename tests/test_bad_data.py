"""One bad file must not end a run: pretraining skips unreadable images (named once, counted, within a
budget, resume exact); tools/check_data.py finds every planted fault; transfer runs name a missing
file before training."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from .conftest import ROOT, run_pretrain
from .test_pretrain_run import TINY

CFG = "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"
GARBAGE = b"\xff\xd8\xff\xe0 this is not a JPEG" + bytes(range(256))


@pytest.fixture
def folder_with_a_bad_file(demo_world, tmp_path):
    """20 images in 2 classes + one corrupt JPEG; batch 7 covers all 21 every epoch."""
    root = tmp_path / "train"
    for cls in sorted(p.name for p in (demo_world / "imagefolder/train").iterdir())[:2]:
        (root / cls).mkdir(parents=True)
        for f in sorted((demo_world / "imagefolder/train" / cls).iterdir())[:10]:
            shutil.copy(f, root / cls / f.name)
    bad = root / cls / "zz_corrupt.jpg"
    bad.write_bytes(GARBAGE)
    return root, bad


RUN = [*TINY, "optim.batch_size=7", "train.ckpt_every_steps=1"]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
def test_bad_image_is_skipped_named_once_and_resume_stays_exact(folder_with_a_bad_file, tmp_path):
    root, bad = folder_with_a_bad_file
    straight = run_pretrain(CFG, root, tmp_path / "a", *RUN, "data.max_bad_fraction=0.1")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert straight.stderr.count(f"unreadable image skipped (replaced by another sample): {bad}") == 1
    events = [json.loads(x) for x in (tmp_path / "a/log.jsonl").read_text().splitlines() if "event" in x]
    assert events == [{"event": "unreadable_image", "path": str(bad), "step": events[0]["step"]}]
    assert json.loads((tmp_path / "a/pretrain_summary.json").read_text())["unreadable_images"] == [str(bad)]
    assert "unreadable images skipped so far" in straight.stderr

    out = tmp_path / "b"  # stop after 4 of 6 steps (as a kill after a checkpoint), then resume
    first = run_pretrain(CFG, root, out, *RUN, "data.max_bad_fraction=0.1", "train.max_steps=4")
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_pretrain(CFG, root, out, *RUN, "data.max_bad_fraction=0.1")
    assert resumed.returncode == 0 and "at step 4" in resumed.stderr, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "a/last.pth"), _weights(out / "last.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "pretrain_summary.json").read_text())["unreadable_images"] == [str(bad)]


@pytest.mark.slow  # the budget's boundary in process: tests/test_edges.py
def test_over_the_budget_stops_with_a_clear_error(folder_with_a_bad_file, tmp_path):
    root, bad = folder_with_a_bad_file  # default budget 0.1% of 21 images: one bad file is too many
    r = run_pretrain(CFG, root, tmp_path / "o", *RUN)
    assert r.returncode != 0
    assert "exceed data.max_bad_fraction=0.001" in r.stderr and str(bad) in r.stderr and "tools/check_data.py" in r.stderr


def _check(root, task):
    """tools/check_data.py ROOT --task TASK, run in this process (its main, its output) for speed."""
    import contextlib
    import io
    import runpy
    from types import SimpleNamespace

    out, err = io.StringIO(), io.StringIO()
    main = runpy.run_path(str(ROOT / "tools/check_data.py"))["main"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(root), "--task", task, "--workers", "2"])
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


ROOTS = {"pretrain": "imagefolder/train", "cls": "imagefolder", "voc_det": ".", "coco_instseg": ".", "voc_seg": "VOC2012",
         "cityscapes_seg": "cityscapes"}


@pytest.mark.parametrize("task", sorted(ROOTS))
def test_check_data_passes_the_clean_world(demo_world, task):
    r = _check(demo_world / ROOTS[task], task)
    assert r.returncode == 0 and " 0 problems" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_check_data_finds_each_planted_fault(demo_world, tmp_path):
    from PIL import Image

    world = tmp_path / "world"
    shutil.copytree(demo_world, world)
    corrupt = world / "imagefolder/train" / sorted(p.name for p in (world / "imagefolder/train").iterdir())[0] / "zz_bad.jpg"
    corrupt.write_bytes(GARBAGE)
    voc12 = world / "VOC2012"
    masks = sorted((voc12 / "SegmentationClass").glob("*.png"))
    masks[0].unlink()                                                             # missing mask
    Image.open(masks[1]).resize((17, 23)).save(masks[1])                           # wrong-size mask
    m = Image.open(masks[2])
    arr = __import__("numpy").array(m)
    arr[0, 0], arr[0, 1] = 30, 21  # 21: one past the last VOC class (20)
    out = Image.fromarray(arr, mode="P")
    out.putpalette(m.getpalette())
    out.save(masks[2])                                                             # label 30 outside 0..20 / 255
    xml = sorted((world / "VOC2007/Annotations").glob("*.xml"))[0]
    xml.unlink()                                                                   # missing annotation file

    r = _check(world / "imagefolder/train", "pretrain")
    assert r.returncode == 1 and f"{corrupt}: unreadable image" in r.stdout and "1 problems" in r.stdout
    r = _check(voc12, "voc_seg")
    assert r.returncode == 1 and "3 problems" in r.stdout, r.stdout
    assert f"{masks[0]}: mask file missing" in r.stdout
    assert f"{masks[1]}: mask is 17x23, its image" in r.stdout
    assert f"{masks[2]}: label values [21, 30] outside 0..20" in r.stdout
    r = _check(world, "voc_det")
    assert r.returncode == 1 and f"VOC2007/test: {xml}: annotation file missing" in r.stdout and "1 problems" in r.stdout
    ann = world / "coco/annotations/instances_val2017.json"
    doc = json.loads(ann.read_text())
    first = doc["images"][0]
    true_w, first["width"] = first["width"], first["width"] + 7                    # the JSON's size is wrong
    ann.write_text(json.dumps(doc))
    r = _check(world, "coco_instseg")
    assert r.returncode == 1 and "1 problems" in r.stdout
    assert f"val2017: {world / 'coco/val2017' / first['file_name']}: image is {true_w}x{first['height']}, the annotation " \
        f"says {true_w + 7}x{first['height']}" in r.stdout


def _world_missing(demo_world, tmp_path, rel):
    world = tmp_path / "world"
    shutil.copytree(demo_world, world)
    gone = sorted((world / rel).iterdir())[3]
    gone.unlink()
    return world, gone


@pytest.mark.detectron2
def test_voc_det_names_a_missing_image_before_training(demo_world, tmp_path):
    from .test_detection import _voc

    world, gone = _world_missing(demo_world, tmp_path, "VOC2007/JPEGImages")
    r = subprocess.run([sys.executable, *_voc(world, tmp_path / "run", "random")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and f"{gone} (image file missing)" in r.stderr and "VOC2007/" in r.stderr, r.stderr[-2000:]
    assert "tools/check_data.py" in r.stderr and not (tmp_path / "run/metrics.json").exists()


@pytest.mark.mmseg
def test_voc_seg_names_a_missing_mask_before_training(demo_world, tmp_path):
    from .test_segmentation import _seg

    world, gone = _world_missing(demo_world, tmp_path, "VOC2012/SegmentationClass")
    r = subprocess.run([sys.executable, *_seg(world, tmp_path / "run", "random")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and f"{gone} (mask file missing)" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run/metrics.json").exists()


@pytest.mark.mmseg
def test_mmengine_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from mmengine.runner import Runner

    from transfer.segmentation.engine import AtomicCheckpointRunner

    def write(content, die):
        def save(self, out_dir, filename, *args, **kwargs):  # stands in for mmengine's writer
            (tmp_path / filename).write_bytes(content)
            if die:
                raise KeyboardInterrupt  # killed mid-write
        return save

    (tmp_path / "iter_8.pth").write_bytes(b"the previous, complete file")
    runner = object.__new__(AtomicCheckpointRunner)
    monkeypatch.setattr(Runner, "save_checkpoint", write(b"half a checkp", die=True))
    with pytest.raises(KeyboardInterrupt):
        runner.save_checkpoint(str(tmp_path), "iter_8.pth")
    assert (tmp_path / "iter_8.pth").read_bytes() == b"the previous, complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["iter_8.pth"]
    monkeypatch.setattr(Runner, "save_checkpoint", write(b"the new file", die=False))
    runner.save_checkpoint(str(tmp_path), "iter_8.pth")
    assert (tmp_path / "iter_8.pth").read_bytes() == b"the new file" and len(list(tmp_path.iterdir())) == 1
