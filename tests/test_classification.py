"""Classification transfer end to end on the generated ImageFolder world: kNN, the linear probe with
the frozen-backbone check, presets, registry names, and clear errors."""
import json

import pytest
import torch

from pretrain.data.images import class_folders
from transfer.classification.linear import PRESETS, sanity_check

from .conftest import run_tool


def _cls(task, world, out, weights, *extra):
    return ["tools/run_transfer.py", "--task", task, "--weights", str(weights), "--data", str(world / "imagefolder"),
            "--dataset", "demo", "--output", str(out), "--size", "64", "--workers", "0", *extra]


@pytest.mark.slow
def test_knn_pretrained_beats_random(knn_eval_data, demo_pretrained, tmp_path):
    """On 600 val images (conftest.knn_eval_data): 6 demo epochs gained +7 to +11 points over random init (8 runs)."""
    ckpt, _ = demo_pretrained
    top1 = {}
    for name, weights in (("random", "random"), ("pretrained", ckpt)):
        r = run_tool("tools/run_transfer.py", "--task", "knn", "--weights", str(weights), "--data", str(knn_eval_data), "--dataset",
                     "demo", "--output", str(tmp_path / name), "--size", "64", "--workers", "0", "--arch", "resnet18")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["dataset"] == "demo world (synthetic)" and set(m["by_k"]) == {"k20", "k200"}
        assert len(m["by_k"]["k20"]["per_class"]) == 4
        top1[name] = m["metrics"]["top1"]
    assert top1["pretrained"] > top1["random"] + 3, top1
    assert m["load_report"]["loaded"] == 120 and not m["load_report"]["missing"]


@pytest.mark.slow
def test_linear_probe_keeps_the_backbone_frozen_and_learns(demo_world, demo_pretrained, tmp_path):
    ckpt, _ = demo_pretrained
    r = run_tool(*_cls("linear_cls", demo_world, tmp_path, ckpt, "--epochs", "8"))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    from torchvision import models

    assert m["backbone_checked_tensors"] == len(models.resnet18().state_dict()) - 2 and m["preset"] == "demo"  # all but fc
    assert m["protocol"] == "demo" and m["metrics"]["top1"] > 100 / 4 + 10, m["metrics"]  # well above chance (4 classes)
    # demo preset: lr 1.0 for a batch of 64 -> 1.0 x 64/256; milestones at 60%/80% of 8 epochs; every val image
    assert m["lr"] == pytest.approx(0.25) and m["milestones"] == [4, 6] and m["final_epoch"] == 8
    assert m["val_images"] == sum(1 for f in (demo_world / "imagefolder/val").rglob("*.jpg"))
    assert 1 <= m["best"]["epoch"] <= 8 and m["best"]["top1"] >= m["metrics"]["top1"]


def test_sanity_check_catches_a_changed_backbone():
    from torchvision import models

    net = models.resnet18(weights=None).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert sanity_check(before, net) == len(before) - 2
    net.train()
    net(torch.randn(2, 3, 32, 32))  # BN running statistics move in train mode
    with pytest.raises(RuntimeError, match="frozen backbone changed"):
        sanity_check(before, net)


def test_presets_follow_the_protocols():
    from transfer.classification.datasets import REGISTRY

    moco = {k: v for k, v in PRESETS["moco"].items() if k != "name"}
    assert moco == dict(lr=30.0, epochs=100, milestones=(0.6, 0.8), optimizer="sgd", batch_size=256, weight_decay=0.0,
                        label="standard")
    assert PRESETS["paper_in1k"]["epochs"] == 90 and PRESETS["paper_200e"]["epochs"] == 200
    assert PRESETS["paper_cars_adam"]["optimizer"] == "adam" and PRESETS["paper_cars_adam"]["lr"] == 0.03
    assert {PRESETS[k]["label"] for k in ("paper_in1k", "paper_200e", "paper_cars_adam")} == {"paper"}
    assert REGISTRY["imagenet"].preset == "moco" and REGISTRY["cub200"].preset == "paper_200e"


def test_missing_dataset_folder_is_a_clear_error(tmp_path, capsys):
    from transfer.classification.run import main

    rc = main("knn", ["--weights", "random", "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")])
    assert rc == 1 and "expected ImageFolder sub-folders train/ and val/" in capsys.readouterr().err


def test_linear_probe_uses_the_scaled_lr_and_its_milestones(demo_world):
    """The lr the optimizer actually used, epoch by epoch: the demo preset's lr 1.0 x 64/256 = 0.25, x0.1 at
    floor(0.6 x 7) = 4 and floor(0.8 x 7) = 5 (MoCo's main_lincls: epochs at 60%/80%, rounded down); every
    validation image evaluated; the backbone untouched."""
    from transfer.classification.features import build_backbone
    from transfer.classification.linear import train_linear

    model, _ = build_backbone("random", "resnet18")
    root = demo_world / "imagefolder"
    res = train_linear(model, root / "train", root / "val", class_folders(root / "train"), dict(PRESETS["demo"], epochs=7), size=16,
                       workers=0)
    assert res["lr_per_epoch"] == pytest.approx([0.25] * 4 + [0.025] + [0.0025] * 2) and res["milestones"] == [4, 5]
    assert res["val_images"] == sum(1 for _ in (root / "val").rglob("*.jpg")) and res["backbone_checked_tensors"] == 120
    assert len(res["per_class"]) == 4 and res["best"]["top1"] >= res["top1"] and 1 <= res["best"]["epoch"] <= 7


def test_fast_probe_standardises_its_features():
    """The fast probe standardises each feature with the training split's mean and std, so any per-feature
    affine rescaling of the features (train and val alike) leaves its predictions unchanged."""
    from transfer.classification.linear import linear_on_features

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2
    ty, vy = torch.arange(60) % 3, torch.arange(30) % 3
    tf, vf = centres[ty] + torch.randn(60, 8, generator=g), centres[vy] + torch.randn(30, 8, generator=g)
    scale, shift = torch.logspace(-3, 3, 8), torch.linspace(-50, 50, 8)
    a = linear_on_features(tf, ty, vf, vy, 3, epochs=20)
    b = linear_on_features(tf * scale + shift, ty, vf * scale + shift, vy, 3, epochs=20)
    assert a["top1"] == b["top1"] and a["per_class"] == b["per_class"] and a["top1"] > 60


def test_knn_task_equals_a_brute_force_knn_on_features_extracted_by_hand(demo_world, tmp_path):
    """`--task knn` end to end (random ResNet-18, 32 px, k = 5 and 20) against features computed here with
    the protocol written out (resize to size x 256/224, centre crop, ImageNet normalisation) and a
    weighted kNN voted in a Python loop."""
    import math

    from PIL import Image
    from torchvision import models
    from torchvision.transforms.v2 import functional as TF

    from transfer.classification.run import main

    root = demo_world / "imagefolder"
    assert main("knn", ["--weights", "random", "--arch", "resnet18", "--data", str(root), "--dataset", "demo", "--size", "32",
                        "--workers", "0", "--k", "5", "20", "--output", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    torch.manual_seed(0)
    net = models.resnet18(weights=None).eval()
    net.fc = torch.nn.Identity()

    def feats(split):
        classes = sorted(p.name for p in (root / split).iterdir())
        xs, ys = [], []
        for y, c in enumerate(classes):
            for f in sorted((root / split / c).iterdir()):
                img = TF.pil_to_tensor(Image.open(f).convert("RGB"))
                img = TF.center_crop(TF.resize(img, round(32 * 256 / 224), antialias=True), [32, 32])
                xs.append(TF.normalize(img.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
                ys.append(y)
        with torch.no_grad():
            return torch.nn.functional.normalize(net(torch.stack(xs)), dim=1), ys

    (tf, ty), (vf, vy) = feats("train"), feats("val")
    sims = (vf @ tf.T).tolist()
    for k in (5, 20):
        hits = 0
        for row, label in zip(sims, vy):
            votes = [0.0] * 4
            for s, y in sorted(zip(row, ty), key=lambda p: -p[0])[:k]:
                votes[y] += math.exp(s / 0.07)
            hits += max(range(4), key=votes.__getitem__) == label
        assert m["by_k"][f"k{k}"]["top1"] == pytest.approx(100 * hits / len(vy), abs=1e-3), k
    from transfer.result import HEADER

    assert set(HEADER) <= set(m) and m["metrics"]["top1"] == m["by_k"]["k5"]["top1"] and m["stage"] == 4 and m["protocol"] == "demo"
