"""The analysis probes: per-stage pooled features (against torchvision's own feature extractor) and the
colour-information probe (labels from known strengths; it tells a colour-keeping backbone from a
colour-invariant one)."""
import math

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

from transfer.classification.colour_probe import colour_probe, draw_pairs, jitter_params, pair_labels
from transfer.classification.features import PooledStage, build_backbone

LEVELS = 10  # the paper's ten colour categories (Sec. 5.2), written here
WIDTHS = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_per_stage_features_are_the_pooled_layer_outputs(arch):
    torch.manual_seed(0)
    net = getattr(models, arch)().eval()
    x = torch.randn(2, 3, 64, 64)
    ref = create_feature_extractor(net, {f"layer{s}": f"s{s}" for s in range(1, 5)})(x)
    for s, width in enumerate(WIDTHS[arch], 1):
        got = PooledStage(net, s)(x)
        assert got.shape == (2, width)
        torch.testing.assert_close(got, ref[f"s{s}"].mean((2, 3)), atol=1e-5, rtol=1e-5)
    model, report = build_backbone("random", arch, stage=3)
    assert model(x).shape == (2, WIDTHS[arch][2]) and report["stage"] == 3
    with pytest.raises(ValueError, match="stage must be 1..4"):
        PooledStage(net, 5)


def test_colour_probe_labels_follow_the_drawn_strengths():
    c1, c2 = draw_pairs(5000, seed=0)
    d = pair_labels(c1, c2)
    assert torch.equal(d, c2 - c1) and c1.min() >= 0 and c2.max() <= LEVELS - 1
    counts = torch.bincount(d, minlength=LEVELS).double()
    bound = 4.5 * math.sqrt(5000 * 0.1 * 0.9)  # each distance has probability 1/10
    assert (counts - 500).abs().max() < bound, counts
    for k in range(LEVELS):  # given the distance k, the weaker view's category is uniform over 0..9-k
        assert set(c1[d == k].tolist()) == set(range(LEVELS - k)), k
    assert pair_labels(torch.tensor([0, 3, 0]), torch.tensor([9, 3, 4])).tolist() == [9, 0, 4]
    # strength category c -> factors 1 + 0.4 c/9 (brightness, contrast, saturation), hue 0.1 c/9, in that order
    v = jitter_params(torch.tensor([0, 9, 3]))
    assert v[:, 7].tolist() == [1, 1, 1] and v[0, 12:16].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(v[:, 8:12], torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.4, 1.4, 1.4, 0.1],
                                                         [1 + 0.4 / 3, 1 + 0.4 / 3, 1 + 0.4 / 3, 0.1 / 3]]))


class _GrayStandardised(nn.Module):
    """A colour-invariant backbone: the network sees each image's grayscale, standardised per image
    (brightness, contrast and saturation changes are gone; hue shifts barely change the luma)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        g = x.mean(1, keepdim=True)
        g = (g - g.mean((2, 3), keepdim=True)) / (g.std((2, 3), keepdim=True) + 1e-5)
        return self.net(g.expand(-1, 3, -1, -1))


def test_colour_probe_tells_colour_keeping_from_colour_invariant_features(demo_world):
    model, _ = build_backbone("random", "resnet18", stage=2)
    root = demo_world / "imagefolder"
    keep = colour_probe(model, root / "train", root / "val", 32, pairs=8, workers=0)
    inv = colour_probe(_GrayStandardised(model), root / "train", root / "val", 32, pairs=8, workers=0)
    n_val = 8 * sum(1 for _ in (root / "val").rglob("*.jpg"))
    assert keep["val_pairs"] == n_val and len(keep["per_class"]) == LEVELS
    val_labels = pair_labels(*draw_pairs(n_val, 1))  # the val split's draws (seed 2 x 0 + 1)
    assert keep["chance"] == pytest.approx(100 * torch.bincount(val_labels).max().item() / n_val, abs=1e-3)  # majority class
    assert keep["top1"] > inv["top1"] + 10, (keep["top1"], inv["top1"])
    assert inv["top1"] < keep["chance"] + 8, inv
