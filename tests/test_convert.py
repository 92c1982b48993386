"""Checkpoint conversion: every supported layout, every depth, clear failures, and (with detectron2)
converted weights giving torchvision's features inside detectron2's model built from our VOC config."""
import importlib.util
import pickle

import numpy as np
import pytest
import torch
from torchvision import models

from transfer.convert import expected_d2_names
from transfer.weights import CheckpointError, extract_backbone

from .conftest import ROOT


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


convert = _tool("convert_to_d2")


def _resnet(depth=18, seed=0):
    """A torchvision ResNet with random weights and random BN statistics (so a wrong mapping shows)."""
    torch.manual_seed(seed)
    net = getattr(models, f"resnet{depth}")(weights=None)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return net


def _backbone(net):
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def _head(prefix, n=2):
    return {f"{prefix}{i}.weight": torch.randn(8, 8) for i in range(n)}


def _hier_aug_ckpt(net):
    from pretrain.config.config import load_config
    from pretrain.engine.build import build_model

    cfg = load_config(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml")
    model = build_model(cfg)
    model.online.backbone.load_state_dict(_backbone(net), strict=False)
    return {"format": "hier-aug-pretrain", "method": model.name, "arch": "resnet18", "model": model.state_dict(),
            "global_step": 3}


def _layouts(net):
    bb = _backbone(net)
    full = net.state_dict()
    authors = {f"module.encoder.{k}": v for k, v in full.items()}
    for s in (1, 2, 3):
        authors |= {f"module.encoder.scala{s}.0.weight": torch.randn(4, 4), f"module.encoder.prepare_attention{s}.0.weight":
                    torch.randn(4), f"module.encoder.attention{s}.0.weight": torch.randn(4)}
    for s in (1, 2, 3, 4):
        authors |= _head(f"module.projector{s}.") | _head(f"module.predictor{s}.")
    for s in (2, 3, 4):
        authors |= _head(f"module.color_enc{s}.")
    return {
        "torchvision": (full, "torchvision", {"projector/head": 2}),
        "moco": ({"arch": "resnet18", "epoch": 200, "state_dict": {**{f"module.encoder_q.{k}": v for k, v in bb.items()},
                  **{f"module.encoder_k.{k}": v.clone() for k, v in bb.items()}, **_head("module.encoder_q.fc."),
                  "module.queue": torch.randn(8, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}},
                 "moco", {"momentum/target encoder": len(bb), "queue": 2, "projector/head": 2}),
        "simsiam": ({"state_dict": {**{f"module.encoder.{k}": v for k, v in bb.items()}, **_head("module.encoder.fc."),
                     **_head("module.predictor.")}}, "simsiam", {"projector/head": 2, "predictor": 2}),
        "byol": ({"online_network.encoder." + k: v for k, v in bb.items()} | _head("online_network.projection.")
                 | {"target_network.encoder." + k: v for k, v in bb.items()} | _head("predictor."),
                 "simsiam", {"projector/head": 2, "predictor": 2, "momentum/target encoder": len(bb)}),
        "backbone": ({"state_dict": {**{f"backbone.{k}": v for k, v in bb.items()}, **_head("neck.mlp."), **_head("head.")}},
                     "backbone", {"projector/head": 4}),
        "solo-learn": ({"state_dict": {**{f"backbone.{k}": v for k, v in bb.items()}, **_head("projector."),
                        **{f"momentum_backbone.{k}": v for k, v in bb.items()}, **_head("classifier.")}},
                       "backbone", {"projector/head": 4, "momentum/target encoder": len(bb)}),
        "authors": ({"epoch": 200, "arch": "resnet18", "state_dict": authors}, "authors",
                    {"intermediate-stage heads": 9, "projector/head": 10, "predictor": 8, "augmentation embedding": 6}),
        # DINO's main_dino.py save_dict: the teacher without DDP's prefix, the student with it
        "dino": ({"teacher": {**{f"backbone.{k}": v for k, v in bb.items()}, **_head("head.mlp.")},
                  "student": {**{f"module.backbone.{k}": torch.randn_like(v.float()) for k, v in bb.items()},
                              **_head("module.head.mlp.")}, "epoch": 100},
                 "dino-teacher", {"projector/head": 2, "DINO student": len(bb) + 2}),
        # VISSL: classy_state_dict -> base_model -> model -> trunk (_feature_blocks.*) and heads
        "vissl": ({"classy_state_dict": {"base_model": {"model": {"trunk": {f"_feature_blocks.{k}": v for k, v in bb.items()},
                                                                 "heads": _head("0.clf.")}}}, "phase_idx": 3},
                  "vissl", {}),
        # lightly: nn.Sequential(*list(resnet.children())[:-1]) as `backbone`, in a Lightning checkpoint
        "lightly": ({"state_dict": {**{_lightly(k): v for k, v in bb.items()}, **_head("projection_head.layers.")}},
                    "lightly", {"projector/head": 2}),
    }


def _lightly(key: str) -> str:
    """torchvision's key -> lightly's Sequential of the ResNet's children (0 conv1, 1 bn1, 4..7 layer1..4)."""
    first, rest = key.split(".", 1)
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}[first]
    return f"backbone.{index}.{rest}"


LAYOUTS = ["torchvision", "moco", "simsiam", "byol", "backbone", "solo-learn", "authors", "hier-aug", "dino", "vissl",
           "lightly"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_converts_to_the_exact_backbone(tmp_path, capsys, name):
    net = _resnet(18)
    if name == "hier-aug":
        obj, layout = _hier_aug_ckpt(net), "hier-aug"
        drops = None
    else:
        obj, layout, drops = _layouts(net)[name]
    src = tmp_path / "in.pth"
    torch.save(obj, src)
    assert convert([str(src), str(tmp_path / "out.pkl")]) == 0
    report = capsys.readouterr().out
    assert f"layout {layout}" in report and "ResNet-18" in report
    ex = extract_backbone(src)
    assert ex.layout == layout
    if drops is not None:
        assert dict(ex.dropped) == drops
    with open(tmp_path / "out.pkl", "rb") as f:
        doc = pickle.load(f)
    assert doc["matching_heuristics"] is True and "__author__" in doc
    _same_values(doc["model"], _backbone(net))


def test_dino_s_student_when_asked_for_and_unknown_nesting_says_where_the_tensors_are(tmp_path):
    net = _resnet(18)
    obj, _, _ = _layouts(net)["dino"]
    ex = extract_backbone(obj, member="student")
    assert ex.layout == "dino-student" and ex.dropped["DINO teacher"] == len(_backbone(net)) + 2
    student = {k[len("module.backbone."):]: v for k, v in obj["student"].items() if k.startswith("module.backbone.")}
    assert ex.state_dict.keys() == student.keys() and all(torch.equal(ex.state_dict[k], v) for k, v in student.items())
    with pytest.raises(CheckpointError, match="no teacher/student pair"):
        extract_backbone({"state_dict": _backbone(net)}, member="student")
    nested = {"weights": {"net": {"encoder": _backbone(net)}}, "step": 3}
    with pytest.raises(CheckpointError, match=r"top-level keys: weights, step\); tensors are nested at: weights -> net "
                                              r"-> encoder \(\d+ tensors\)"):
        extract_backbone(nested)
    src = tmp_path / "dino.pth"
    torch.save(obj, src)
    out = tmp_path / "student.pth"
    assert _tool("extract_backbone")([str(src), str(out), "--member", "student"]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["source_layout"] == "dino-student"


# torchvision -> Detectron2 names, written by hand from detectron2's ResNet (stem, resN = layerN-1, convK.norm)
HAND_NAMES = {"conv1.weight": "stem.conv1.weight", "bn1.running_var": "stem.conv1.norm.running_var",
              "layer1.0.conv2.weight": "res2.0.conv2.weight", "layer1.1.bn2.bias": "res2.1.conv2.norm.bias",
              "layer2.0.downsample.0.weight": "res3.0.shortcut.weight",
              "layer2.0.downsample.1.running_mean": "res3.0.shortcut.norm.running_mean",
              "layer4.1.bn1.weight": "res5.1.conv1.norm.weight", "layer3.1.bn2.num_batches_tracked": "res4.1.conv2.norm.num_batches_tracked"}


def _same_values(model: dict, tv: dict) -> None:
    """By value: as many tensors as torchvision's backbone, every one of them present once with its
    values (a multiset comparison, names aside), and the hand-written names hold the right tensors."""
    assert len(model) == len(tv)
    key = lambda a: (tuple(np.shape(a)), np.asarray(a).tobytes())
    assert sorted(key(v) for v in model.values()) == sorted(key(v.numpy()) for v in tv.values())
    for tv_name, d2 in HAND_NAMES.items():
        np.testing.assert_array_equal(model[d2], tv[tv_name].numpy())


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_names_and_shapes_for_every_depth(tmp_path, depth):
    net = getattr(models, f"resnet{depth}")(weights=None)
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    assert convert([str(tmp_path / "tv.pth"), str(tmp_path / "out.pkl")]) == 0
    with open(tmp_path / "out.pkl", "rb") as f:
        model = pickle.load(f)["model"]
    assert len(model) == len(net.state_dict()) - 2  # every torchvision tensor but fc.weight/fc.bias
    assert set(model) == expected_d2_names(depth)  # and the names detectron2's model checks at load (test below)
    assert model["stem.conv1.weight"].shape == (64, 3, 7, 7)
    assert "stem.conv1.norm.running_var" in model and "res5.0.shortcut.norm.weight" in model
    assert ("res2.0.shortcut.weight" in model) == (depth >= 50)  # basic blocks have no res2 projection
    last = "res5.2.conv3.weight" if depth >= 50 else "res5.1.conv2.weight"
    assert model[last].shape == tuple(net.state_dict()[last.replace("res5", "layer4").replace("conv3", "conv3")].shape)


def _broken(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "truncated":
        torch.save(_resnet(18).state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not-a-checkpoint":
        path.write_text("epoch,loss\n1,0.5\n")
    elif kind == "no-backbone":
        torch.save({"state_dict": {"head.fc.weight": torch.randn(10, 8), "head.fc.bias": torch.randn(10)}}, path)
    elif kind == "partial-backbone":
        torch.save({k: v for k, v in _resnet(18).state_dict().items() if not k.startswith("layer4.1.")}, path)
    elif kind == "python-objects":
        torch.save({"state_dict": _resnet(18).state_dict(), "args": argparse_like()}, path)
    return path


class argparse_like:  # a pickled Python object: refused by weights_only loading
    lr = 0.1


@pytest.mark.parametrize("kind,needle", [("truncated", "truncated"), ("not-a-checkpoint", "not a readable PyTorch checkpoint"),
                                         ("no-backbone", "no ResNet backbone"), ("partial-backbone", "basic blocks (2, 2, 2, 1)"),
                                         ("python-objects", "re-saved as a plain state_dict")])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, kind, needle):
    out = tmp_path / "out.pkl"
    assert convert([str(_broken(tmp_path, kind)), str(out)]) == 1
    err = capsys.readouterr().err
    assert needle in err and kind in err  # names the file and what is wrong
    assert not out.exists() and not list(tmp_path.glob(".out.pkl*"))


def test_coverage_names_missing_tensors():
    sd = _backbone(_resnet(18))
    sd.pop("layer2.0.downsample.1.running_var")
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. layer2.0.downsample.1.running_var\)"):
        extract_backbone({"state_dict": sd})


def test_extract_backbone_tool_writes_a_torchvision_state_dict(tmp_path):
    net = _resnet(18)
    torch.save(_layouts(net)["moco"][0], tmp_path / "moco.pth")
    assert _tool("extract_backbone")([str(tmp_path / "moco.pth"), str(tmp_path / "bb.pth"), "--prefix", "backbone."]) == 0
    doc = torch.load(tmp_path / "bb.pth", weights_only=True)
    fresh = models.resnet18(weights=None)
    result = fresh.load_state_dict({k.removeprefix("backbone."): v for k, v in doc["state_dict"].items()}, strict=False)
    assert result.missing_keys == ["fc.weight", "fc.bias"] and not result.unexpected_keys
    assert doc["meta"]["depth"] == 18


def _d2_features(pkl, config, image, **over):
    from detectron2.modeling import build_model

    import transfer.detectron2.heads  # noqa: F401
    from transfer.detectron2.checkpoint import SafeCheckpointer
    from transfer.detectron2.protocol import adapt_to_run, load_preset, resolve_config

    cfg = load_preset(resolve_config(config))
    adapt_to_run(cfg, cfg.clone(), 1, None)
    cfg.MODEL.DEVICE = "cpu"
    for k, v in over.items():
        cfg.merge_from_list([k, v])
    model = build_model(cfg).eval()
    SafeCheckpointer(model).load(str(pkl))
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        res4 = model.backbone(images.tensor)["res4"]
        res5 = model.roi_heads.res5[:-1](res4)  # without the extra norm, which is new
    return res4, res5


@pytest.mark.detectron2
def test_detectron2_res4_equals_torchvision_layer3(tmp_path):
    net = _resnet(50, seed=1).eval()
    torch.save(net.state_dict(), tmp_path / "r50.pth")
    assert convert([str(tmp_path / "r50.pth"), str(tmp_path / "r50.pkl")]) == 0
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (3, 224, 256), generator=g).float()
    with torch.no_grad():
        x = (rgb[None] / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        layer3 = net.layer3(net.layer2(net.layer1(x)))
        layer4 = net.layer4(layer3)
    rel = lambda a, b: float((a - b).norm() / b.norm())
    res4, res5 = _d2_features(tmp_path / "r50.pkl", "pascal_voc_R_50_C4_24k_moco", rgb)
    assert rel(res4, layer3) < 1e-4 and rel(res5, layer4) < 1e-4
    # the check can fail: the supervised MSRA preset's rules (caffe mean/std, stride in the 1x1 conv), or
    # only the stride rule, give other features from the same weights
    msra, _ = _d2_features(tmp_path / "r50.pkl", "pascal_voc_R_50_C4_24k", rgb)
    s1x1, _ = _d2_features(tmp_path / "r50.pkl", "pascal_voc_R_50_C4_24k_moco", rgb, **{"MODEL.RESNETS.STRIDE_IN_1X1": "True"})
    assert rel(msra, layer3) > 1e-2 and rel(s1x1, layer3) > 1e-2
