"""The random draws themselves, not their replay: over many draws, what is drawn has the distribution it
should (chi-square or Kolmogorov-Smirnov at alpha = 0.001 against the intended law or torchvision's own
sampler), and every view of every image is a fresh draw (epoch to epoch, view to sibling view)."""
import itertools
import math

import torch
from scipy import stats as sps
from torchvision.transforms import RandomResizedCrop

from pretrain.data.views import MultiViewDataset, MultiViewTransform, PairSpec
from pretrain.transforms.augment import AugPipeline
from pretrain.transforms.params import BLUR, BLUR_SIGMA, CROP_BOX, JITTER, JITTER_FACTORS, JITTER_ORDER, ROTATE, ROTATE_K

ALPHA = 1e-3
ALL = ("crop", "flip", "jitter", "gray", "blur", "solarize", "rotate")


def _draws(pipe, n, seed=0, shape=(300, 400)):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([pipe.sample(*shape, g) for _ in range(n)])


def test_every_jitter_order_is_drawn_uniformly():
    vs = _draws(AugPipeline(size=32, types=ALL, jitter_p=1.0), 2400)
    orders = [tuple(int(k) for k in row) for row in vs[:, JITTER_ORDER]]
    counts = [orders.count(p) for p in itertools.permutations(range(4))]
    assert min(counts) > 0, counts
    assert sps.chisquare(counts).pvalue > ALPHA, counts


def test_rotation_draws_every_quarter_turn_uniformly():
    vs = _draws(AugPipeline(size=32, types=ALL, rotate_p=1.0), 2000)
    assert bool((vs[:, ROTATE] == 1).all())
    counts = [int((vs[:, ROTATE_K] == k).sum()) for k in range(4)]
    assert min(counts) > 0 and sps.chisquare(counts).pvalue > ALPHA, counts


def test_jitter_factors_and_blur_sigma_are_uniform_on_their_ranges():
    vs = _draws(AugPipeline(size=32, types=ALL, jitter_p=1.0, blur_p=1.0, jitter=(0.4, 0.3, 0.2, 0.1)), 2000)
    assert bool((vs[:, JITTER] == 1).all()) and bool((vs[:, BLUR] == 1).all())
    for col, (lo, hi) in zip(range(JITTER_FACTORS.start, JITTER_FACTORS.stop), ((0.6, 1.4), (0.7, 1.3), (0.8, 1.2), (-0.1, 0.1))):
        assert sps.kstest(vs[:, col].numpy(), sps.uniform(lo, hi - lo).cdf).pvalue > ALPHA, col
    assert sps.kstest(vs[:, BLUR_SIGMA].numpy(), sps.uniform(0.1, 1.9).cdf).pvalue > ALPHA
    # the four factors of one view are independent draws (not one draw reused)
    assert abs(float(torch.corrcoef(vs[:, JITTER_FACTORS].T)[0, 1])) < 0.1


def test_crop_boxes_follow_torchvision_random_resized_crop_statistics():
    """Area fraction, log aspect ratio and the box centre: two-sample KS against torchvision's own sampler
    (independent seeds), for a landscape image and a very elongated one (the fallback path)."""
    for shape, scale in (((300, 400), (0.2, 1.0)), ((60, 400), (0.08, 1.0))):
        h, w = shape
        ours = _draws(AugPipeline(size=32, types=("crop",), crop_scale=scale), 3000, seed=1, shape=shape)[:, CROP_BOX]
        torch.manual_seed(2)
        ref = torch.tensor([RandomResizedCrop.get_params(torch.empty(1, h, w), list(scale), [3 / 4, 4 / 3])
                            for _ in range(3000)], dtype=torch.float64)  # (top, left, height, width) in pixels
        theirs = torch.stack([ref[:, 0] / h, ref[:, 1] / w, ref[:, 2] / h, ref[:, 3] / w], 1)
        ours = (ours[:, :4].double() * torch.tensor([h, w, h, w])).round() / torch.tensor([h, w, h, w])  # same grid
        for name, f in (("area", lambda b: b[:, 2] * b[:, 3]), ("log ratio", lambda b, h=h, w=w: torch.log(b[:, 3] * w / (b[:, 2] * h))),
                        ("centre y", lambda b: b[:, 0] + b[:, 2] / 2), ("centre x", lambda b: b[:, 1] + b[:, 3] / 2)):
            p = sps.ks_2samp(f(ours).numpy(), f(theirs).numpy()).pvalue
            assert p > ALPHA, (shape, name, p)


def test_each_view_is_a_fresh_draw_across_epochs_and_from_its_sibling(tmp_path):
    from torchvision.io import encode_jpeg, write_file

    (tmp_path / "c").mkdir()
    for i in range(20):
        write_file(str(tmp_path / f"c/{i}.jpg"), encode_jpeg(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)))
    pipe = AugPipeline(size=16, types=ALL)
    ds = MultiViewDataset(str(tmp_path), MultiViewTransform([PairSpec(4, (pipe, pipe))], geometric_only=True), seed=3)
    params = {(i, e): ds[(i, e)][1] for i in range(20) for e in range(6)}
    for i in range(20):
        p0, p1 = params[(i, 0)], params[(i, 1)]
        assert not torch.equal(p0[0], p0[1]), i  # sibling views differ
        assert not torch.equal(p0[0], p1[0]) and not torch.equal(p0[1], p1[1]), i  # epoch 0 vs 1
    assert torch.equal(ds[(3, 0)][1][0], params[(3, 0)][0])  # and a replay is exact
    crops = torch.stack([params[(i, 0)][0][CROP_BOX] for i in range(20)])
    assert len({tuple(c.tolist()) for c in crops}) == 20  # every image its own crop
    # the flip is a fair coin over images and epochs
    flips = [float(v[k][6]) for v in params.values() for k in (0, 1)]
    assert abs(sum(flips) / len(flips) - 0.5) < 4.5 * math.sqrt(0.25 / len(flips))
