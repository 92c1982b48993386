"""The default configuration is the authors' model (zhangjb416/Hierarchical-Augmentation,
`resnet_imagenet.py`, `simsiam_base/builder.py`, `augmentations/simsiam_aug.py`, supplementary).

Every expected value here is written down by hand from that code/paper, not produced by the code
under test; each test fails if one listed fact changes (head shapes, upsampling mode, add-one table,
strength steps, per-view BN statistics in the batched modes, rotation)."""
import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from benchmarks.perf.torchvision_views import torchvision_view
from pretrain.config.config import load_config
from pretrain.engine.build import build_model, build_transform
from pretrain.models.encoder import param_index
from pretrain.models.heads import StageHead
from pretrain.transforms.augment import PARAM_DIM, AugPipeline
from pretrain.transforms.photometric import blur_kernel

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = ROOT / "configs/pretrain/simsiam-hier_resnet50_8xb32-coslr-200e_in100.yaml"
FULL = dict(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=0.5,
            blur_sigma=(0.1, 2.0), flip_p=0.5, solarize_p=0.0, size=224)
# The authors' add-one table: pair / stage -> augmentation types of both views.
ADD_ONE = {1: {"crop", "jitter"}, 2: {"crop", "jitter", "gray"}, 3: {"crop", "jitter", "gray", "blur"},
           4: {"crop", "jitter", "gray", "blur", "flip"}}
# Parameter counts of the authors' stage-1/2/3 heads (BN affine included, no conv biases).
HEAD_PARAMS = {"resnet18": (545_920, 570_624, 669_184), "resnet50": (1_347_712, 1_409_280, 1_655_296)}


def test_add_one_table_and_values():
    tf = build_transform(load_config(AUTHORS))
    assert [p.stage for p in tf.pairs] == [1, 2, 3, 4]
    for pair in tf.pairs:
        for pipe in pair.views:
            assert set(pipe.types) == ADD_ONE[pair.stage]
            for k, v in FULL.items():
                assert getattr(pipe, k) == pytest.approx(v), (pair.stage, k)
            assert blur_kernel(pipe.size) == 23  # the kernel photometric.gaussian_blur is given at 224 px


def test_baseline_is_pair_four_alone():
    cfg = load_config(ROOT / "configs/pretrain/simsiam_resnet50_8xb32-coslr-200e_in100.yaml")
    tf = build_transform(cfg)
    assert [p.stage for p in tf.pairs] == [4] and set(tf.pairs[0].views[0].types) == ADD_ONE[4]
    assert build_model(cfg).stages == [4]


def test_views_follow_the_authors_order():
    g = torch.Generator().manual_seed(3)
    img = (torch.rand(3, 120, 150, generator=g) * 255).to(torch.uint8)
    pipe = AugPipeline(size=64, jitter_p=1.0, gray_p=1.0, blur_p=1.0, flip_p=1.0)
    view, v = pipe(img, g)
    assert v[[0, 6, 7, 16, 17]].tolist() == [1, 1, 1, 1, 1]
    # torchvision's ops in the authors' order (crop+resize, flip, jitter in the recorded order, blur, grayscale)
    torch.testing.assert_close(view, torchvision_view(img, v, 64, as_float=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_stage_heads_are_the_authors(arch):
    cfg = load_config(AUTHORS, [f"method.arch={arch}"])
    enc = build_model(cfg).online
    width = {"resnet18": 512, "resnet50": 2048}[arch]
    counts = tuple(sum(p.numel() for p in enc.heads[str(s)].parameters()) for s in (1, 2, 3))
    assert counts == HEAD_PARAMS[arch]
    enc.eval()
    x = torch.randn(2, 3, 64, 64)
    for s in (1, 2, 3):
        assert enc.heads[str(s)](enc.backbone(x, s)).shape == (2, width)


def _sep(x, convs, bns, stride):
    """Separable block, written out: (dw3x3 stride s, pw1x1, BN, ReLU), (dw3x3, pw1x1, BN, ReLU)."""
    for j, st in ((0, stride), (1, 1)):
        dw, pw = convs[2 * j], convs[2 * j + 1]
        x = F.conv2d(x, dw.weight, stride=st, padding=1, groups=x.shape[1])
        x = F.relu(_bn(F.conv2d(x, pw.weight), bns[j]))
    return x


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stage_head_function_against_a_written_out_forward(stage):
    torch.manual_seed(stage)
    cin, red = (64, 128, 256)[stage - 1], (16, 32, 64)[stage - 1]
    head = StageHead(cin, red, stage, 96).eval()
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 2.0)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.weight.shape[0] for c in convs[5:-1:2]] == [red * 2 ** (i // 2) for i in range(len(convs[5:-1:2]))]
    x = torch.randn(2, cin, 16, 16)
    r = F.relu(_bn(F.conv2d(x, convs[0].weight), bns[0]))
    gate = _sep(r, convs[1:5], bns[1:3], 2)
    gate = torch.sigmoid(_bn(F.interpolate(gate, scale_factor=2, mode="bilinear", align_corners=False), bns[3]))
    y = r * gate
    c, b = 5, 4
    for _ in range(4 - stage):
        assert convs[c + 3].weight.shape[0] == 2 * y.shape[1]  # each block doubles the channels
        y = _sep(y, convs[c:c + 4], bns[b:b + 2], 2)
        c, b = c + 4, b + 2
    y = F.relu(_bn(F.conv2d(y, convs[c].weight), bns[b])).mean((2, 3))
    torch.testing.assert_close(head(x), y, atol=1e-5, rtol=1e-5)


def test_head_convs_get_kaiming_normal_fan_out():
    torch.manual_seed(0)
    head = StageHead(256, 64, 1, 2048)
    for conv in (m for m in head.modules() if isinstance(m, nn.Conv2d)):
        w = conv.weight
        if w.numel() < 30_000:
            continue
        fan_out = w.shape[0] * w[0, 0].numel()
        assert w.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.03)


def _layers(seq):
    out = []
    for m in seq:
        if isinstance(m, nn.Linear):
            out.append(("Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("BN", m.num_features, m.affine))
        else:
            out.append((type(m).__name__,))
    return out


@pytest.mark.parametrize("config", [AUTHORS, None], ids=["authors-config", "defaults"])
def test_projector_predictor_and_embedding_are_the_authors(config):
    model = build_model(load_config(config))
    enc = model.online
    assert sorted(enc.embeds) == ["2", "3", "4"] and param_index(["jitter"]) == [8, 9, 10, 11]
    assert _layers(enc.embeds["3"].net) == [("Linear", 4, 512, True), ("BN", 512, True), ("ReLU",)]
    for s, d in ((1, 2048), (2, 2560), (3, 2560), (4, 2560)):
        assert _layers(enc.projectors[str(s)]) == [
            ("Linear", d, 2048, True), ("BN", 2048, True), ("ReLU",), ("Linear", 2048, 2048, True), ("BN", 2048, True),
            ("ReLU",), ("Linear", 2048, 2048, False), ("BN", 2048, True)]
        assert _layers(model.predictors[str(s)]) == [("Linear", 2048, 512, True), ("BN", 512, True), ("ReLU",),
                                                     ("Linear", 512, 2048, True)]


def test_mocov2_head_is_the_published_one():
    cfg = load_config(ROOT / "configs/pretrain/mocov2_resnet50_8xb32-coslr-200e_in100.yaml")
    assert _layers(build_model(cfg).online.projectors["4"]) == [("Linear", 2048, 2048, True), ("ReLU",),
                                                                 ("Linear", 2048, 128, True)]
    m, o = cfg["method"], cfg["optim"]
    assert (m["temperature"], m["momentum"], m["queue_size"], o["lr"], o["weight_decay"], cfg["train"]["sync_bn"]) == \
        (0.2, 0.999, 65536, 0.03, 1e-4, False)


@pytest.mark.parametrize("method,fixed", [("simsiam", True), ("byol", False), ("barlowtwins", False)])
def test_paper_baselines_share_augmentations_and_fix_the_predictor_lr_for_simsiam_only(method, fixed):
    cfg = load_config(ROOT / f"configs/pretrain/{method}-hier_resnet50_8xb32-coslr-200e_in100.yaml")
    assert cfg["optim"]["fix_pred_lr"] is fixed
    for pair in build_transform(cfg).pairs:
        assert set(pair.views[0].types) == ADD_ONE[pair.stage]
        assert all(p.blur_p == 0.5 and p.solarize_p == 0.0 for p in pair.views)


# Supplementary, Sec. D: per level below stage 4: probabilities -0.05, jitter strengths -0.02, crop min +0.1.
STRENGTH = {1: dict(crop_scale=(0.5, 1.0), jitter=(0.34, 0.34, 0.34, 0.04), gray_p=0.05, blur_p=0.35, flip_p=0.35),
            2: dict(crop_scale=(0.4, 1.0), jitter=(0.36, 0.36, 0.36, 0.06), gray_p=0.10, blur_p=0.40, flip_p=0.40),
            3: dict(crop_scale=(0.3, 1.0), jitter=(0.38, 0.38, 0.38, 0.08), gray_p=0.15, blur_p=0.45, flip_p=0.45),
            4: dict(crop_scale=(0.2, 1.0), jitter=(0.40, 0.40, 0.40, 0.10), gray_p=0.20, blur_p=0.50, flip_p=0.50)}


def test_hierarchical_strength_steps():
    cfg = load_config(ROOT / "configs/pretrain/simsiam-hier-strength_resnet50_8xb32-coslr-200e_in100.yaml")
    for pair in build_transform(cfg).pairs:
        assert set(pair.views[0].types) == ADD_ONE[4]
        for k, v in STRENGTH[pair.stage].items():
            assert getattr(pair.views[1], k) == pytest.approx(v), (pair.stage, k)


def test_rotation_draws_replays_and_embeds():
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(3, 40, 40, generator=g) * 255).to(torch.uint8)
    pipe = AugPipeline(size=32, types=("rotate",))
    vs = torch.stack([pipe.sample(40, 40, g) for _ in range(800)])
    assert vs[:, 20].mean().item() == pytest.approx(0.5, abs=0.06)
    ks = vs[vs[:, 20] == 1, 21]
    assert set(ks.tolist()) == {0, 1, 2, 3} and all(abs((ks == k).float().mean().item() - 0.25) < 0.07 for k in range(4))
    base = TF.resize(img, [32, 32], antialias=True)
    for k in range(4):
        v = torch.zeros(PARAM_DIM)
        v[[3, 4, 5, 9, 10, 11]] = 1.0
        v[20], v[21] = 1.0, float(k)
        want = base
        for _ in range(k):  # one counter-clockwise quarter turn = transpose, then flip rows
            want = want.transpose(-2, -1).flip(-2)
        want = TF.normalize(want.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # ImageNet's, written out
        torch.testing.assert_close(pipe.apply(img, v), want, atol=1e-6, rtol=0)
    view, v = pipe(img, torch.Generator().manual_seed(5))
    torch.testing.assert_close(view, torchvision_view(img, v, 32, as_float=True), atol=1e-6, rtol=0)
    assert param_index(["rotate"]) == [20, 21]
    cfg = load_config(ROOT / "configs/pretrain/simsiam-hier-rotate_resnet50_8xb32-coslr-200e_in100.yaml")
    assert [("rotate" in p.views[0].types) for p in build_transform(cfg).pairs] == [False, False, False, True]
    assert "rotate" not in {t for p in build_transform(load_config(AUTHORS)).pairs for t in p.views[0].types}


SMALL = ["method.arch=resnet18", "method.proj={hidden: 32, out: 16}", "method.pred_hidden=8", "method.queue_size=64",
         "hier.head_reduce=[8, 8, 8]", "expand.dim=8"]


def _randomize(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.affine:
                m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.3
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", ["simsiam", "byol", "mocov2", "barlowtwins"])
def test_batching_modes_equal_in_train_mode(name):
    cfg = load_config(AUTHORS, [f"method.name={name}", *SMALL])
    if name == "barlowtwins":
        cfg["method"]["proj"].update(last_bn=False)
    torch.manual_seed(0)
    ref = build_model(cfg).train()
    _randomize(ref)
    ref.double()  # float64: the modes must agree to rounding, so the tolerance can be tight
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64) * (1 + k / 4) + k / 8 for k in range(8)]
    params = [torch.rand(4, PARAM_DIM, generator=g, dtype=torch.float64) for _ in range(8)]
    results = {}
    for mode in ("view", "pair", "shared"):
        model = copy.deepcopy(ref)
        model.batching = mode
        loss, _ = model(views, params)
        loss.backward()
        results[mode] = (loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                         {n: b for n, b in model.named_buffers() if "running" in n})
    loss0, grads0, bufs0 = results["view"]
    assert len(grads0) > 50
    for mode in ("pair", "shared"):
        loss, grads, bufs = results[mode]
        torch.testing.assert_close(loss, loss0, rtol=1e-9, atol=1e-10)
        assert grads.keys() == grads0.keys()
        for n in grads0:
            torch.testing.assert_close(grads[n], grads0[n], rtol=1e-6, atol=1e-9, msg=lambda m, n=n, mode=mode: f"{mode} {n}: {m}")
        for n in bufs0:
            torch.testing.assert_close(bufs[n], bufs0[n], rtol=1e-9, atol=1e-10, msg=lambda m, n=n, mode=mode: f"{mode} {n}: {m}")


def test_cosine_is_per_epoch_as_the_authors():
    from pretrain.engine.optim import lr_at, schedule_step

    # 10 epochs of 10 steps, base lr 1: the authors' lr in epoch e is 0.5 * (1 + cos(pi * e / 10)).
    lrs = [lr_at(schedule_step(t, 10, 0, "epoch"), 100, 0, 1.0) for t in range(100)]
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(0.5 * (1 + math.cos(math.pi * (t // 10) / 10)))
    assert load_config(AUTHORS)["optim"]["schedule_unit"] == "epoch"
    assert lr_at(schedule_step(15, 10, 0, "step"), 100, 0, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.15)))
