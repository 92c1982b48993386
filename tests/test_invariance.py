"""The invariance map's number: constant features score 1, hand-made features and a network that is the
identity on pixels score the values computed by hand, two identical checkpoints differ by zero, and the
runner's metrics.json holds what the function computes."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torchvision.io import encode_png, write_file

from transfer.classification.invariance import AUGMENTATIONS, difference, invariance, invariance_map

from .conftest import ROOT


def test_features_that_ignore_the_input_score_one():
    r = invariance(torch.ones(10, 4) * 3, torch.randn(10, 4))
    assert r == {"mean": 1.0, "low": 1.0, "high": 1.0}


def test_hand_made_features():
    e = torch.eye(3)
    aug = torch.stack([e[0], (e[1] + e[2]) / math.sqrt(2), -e[2]])
    r = invariance(e, aug, boot=50)
    assert r["mean"] == pytest.approx((1 + 1 / math.sqrt(2) - 1) / 3)  # neg = 0: the mean cosine to the copies
    assert r["low"] <= r["mean"] <= r["high"]


def _identity_net():
    """A 'ResNet' whose every stage is the identity: the pooled features are the views' channel means."""
    same = nn.Identity()
    net = SimpleNamespace(conv1=same, bn1=same, relu=same, maxpool=same, layer1=same, layer2=same, layer3=same, layer4=same)
    net.to, net.eval = (lambda device: net), (lambda: net)
    return net


def _images(folder, n=6, size=16):
    (folder / "c").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n):
        img = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        img[i % 3] //= 3  # images of different colours
        paths.append(str(folder / f"c/{i}.png"))
        write_file(paths[-1], encode_png(img))
    return paths


def test_an_identity_network_scores_the_hand_computed_values(tmp_path):
    from torchvision.io import read_image

    paths = _images(tmp_path)
    got = invariance_map(_identity_net(), paths, 16, boot=20)
    assert all(got[f"layer{s}"]["flip"]["mean"] == pytest.approx(1.0) for s in (1, 2, 3, 4))  # channel means unchanged
    # grayscale: features (m_c - mu_c) / sd_c before, (L - mu_c) / sd_c after, L the luma of the channel means
    m = torch.stack([read_image(p).double().mean((1, 2)) / 255 for p in paths])
    # ImageNet's mean/std and ITU-R 601-2 luma (PIL, torchvision), written here, not read from the code under test
    mu, sd = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float64), torch.tensor((0.229, 0.224, 0.225), dtype=torch.float64)
    lum = (m * torch.tensor((0.2989, 0.587, 0.114), dtype=torch.float64)).sum(1, keepdim=True)
    orig, gray = (m - mu) / sd, (lum - mu) / sd

    def cos(a, b):
        return float((a * b).sum() / (a.norm() * b.norm()))

    n = len(paths)
    pos = sum(cos(orig[i], gray[i]) for i in range(n)) / n
    neg = sum(cos(orig[i], orig[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    assert got["layer4"]["gray"]["mean"] == pytest.approx((pos - neg) / (1 - neg), rel=1e-5)


def test_two_identical_checkpoints_give_a_zero_difference_map(tmp_path):
    from torchvision.models import resnet18

    paths = _images(tmp_path, n=4, size=32)
    maps = []
    for _ in range(2):
        torch.manual_seed(0)
        maps.append(invariance_map(resnet18(), paths, 32, boot=10))
    d = difference(*maps)
    assert list(d) == ["layer1", "layer2", "layer3", "layer4"] and list(d["layer1"]) == list(AUGMENTATIONS)
    assert all(cell["mean"] == 0 for row in d.values() for cell in row.values())


def test_the_runner_writes_the_map_the_function_computes(demo_world, tmp_path):
    import json
    import runpy

    from transfer.classification.features import build_backbone
    from transfer.classification.invariance import pick_images

    main = runpy.run_path(str(ROOT / "tools/run_transfer.py"))["main"]
    out = tmp_path / "inv"
    assert main(["--task", "invariance", "--weights", "random", "--arch", "resnet18", "--data", str(demo_world / "imagefolder"),
                 "--dataset", "demo", "--size", "32", "--images", "8", "--workers", "0", "--output", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    model, _ = build_backbone("random", "resnet18", 0)
    want = invariance_map(model.net, pick_images(demo_world / "imagefolder/val", 8), 32)
    flat = lambda mm: {(r, c, k): v for r in mm for c in mm[r] for k, v in mm[r][c].items()}  # noqa: E731
    assert flat(m["metrics"]["matrix"]) == pytest.approx(flat(want)) and m["images"] == 8 and (out / "invariance.png").stat().st_size > 1000
