"""Segmentation transfer on real MMSegmentation (marker `mmseg`): every shipped config builds with the
torchvision-style backbone, the demo preset fine-tunes from a raw pretraining checkpoint and learns,
and a killed run resumes through the safe checkpoint loader."""
import json

import pytest

from .conftest import ROOT, kill_when, run_tool

pytestmark = pytest.mark.mmseg
CONFIGS = sorted(p.stem for p in (ROOT / "configs/transfer/mmseg").glob("*.py"))
# Background alone gives mIoU ~ 100/(K+1) only when nothing else is predicted; this run reaches ~40+.
VOC_MIOU_MIN = 25.0


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_loads_and_builds(name):
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from transfer.segmentation.protocol import adapt_to_run, resolve_config

    register_all_modules()
    cfg = Config.fromfile(str(resolve_config(name)))
    bb = cfg.model.backbone
    assert bb.type == "ResNet" and bb.style == "pytorch" and cfg.model.pretrained is None
    assert bb.init_cfg.type == "Pretrained" and bb.init_cfg.prefix == "backbone."
    if not name.startswith("demo"):
        assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.optim_wrapper.optimizer.weight_decay == 0.0005
        assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4 and cfg.model.auxiliary_head.in_index == 2
        assert cfg.train_cfg.max_iters == (40000 if "cityscapes" in name else 20000)
        assert cfg.model.backbone.norm_cfg.type == "SyncBN"
    adapt_to_run(cfg, 1, None)
    model = MODELS.build(cfg.model)
    assert hasattr(model.backbone, "conv1") and not hasattr(model.backbone, "stem")  # plain 7x7 stem, torchvision keys


def test_single_process_run_is_flagged_and_scaled():
    from mmengine.config import Config

    from transfer.segmentation.protocol import adapt_to_run, protocol_changes, resolve_config

    preset = Config.fromfile(str(resolve_config("fcn_r50-d8_4xb4-20k_voc12aug-512x512")))
    cfg = Config.fromfile(str(resolve_config("fcn_r50-d8_4xb4-20k_voc12aug-512x512")))
    notes = adapt_to_run(cfg, 1, None)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.0025) and cfg.train_cfg.max_iters == 80000
    assert notes and "total batch 16" in notes[0]
    assert "model.backbone.norm_cfg.type: SyncBN -> BN" in protocol_changes(preset, cfg)
    four = Config.fromfile(str(resolve_config("fcn_r50-d8_4xb4-20k_voc12aug-512x512")))
    assert adapt_to_run(four, 4, None) == [] and protocol_changes(preset, four) == []


def _seg(world, out, weights, *extra):
    return ["tools/run_transfer.py", "--task", "voc_seg", "--weights", str(weights), "--config", "demo_fcn_r18-d8_voc-192",
            "--data-root", str(world / "VOC2012"), "--output", str(out), *extra]


@pytest.mark.slow
def test_voc_seg_from_a_raw_checkpoint_learns(demo_world, demo_pretrained, tmp_path):
    ckpt, _ = demo_pretrained
    r = run_tool(*_seg(demo_world, tmp_path, ckpt, "--cfg-options", "train_cfg.max_iters=200", "train_cfg.val_interval=200",
                       "param_scheduler.0.end=200"))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["protocol"] == "demo" and m["load_report"]["ok"]
    assert m["load_report"]["verified_identical"] == m["load_report"]["backbone_tensors"] == 100
    assert set(m["per_class_IoU"]) >= {"background", "aeroplane", "bicycle", "bird", "boat"}
    assert m["mIoU"] > VOC_MIOU_MIN, m["per_class_IoU"]


@pytest.mark.slow
def test_killed_run_resumes_through_the_safe_loader(demo_world, tmp_path):
    import torch
    from torchvision import models

    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    args = _seg(demo_world, tmp_path / "run", tmp_path / "tv.pth", "--cfg-options", "train_cfg.max_iters=16",
                "train_cfg.val_interval=16", "default_hooks.checkpoint.interval=4")
    kill_when(args, tmp_path / "run/last_checkpoint")  # mmengine tags a checkpoint once it is written
    assert not (tmp_path / "run/metrics.json").exists()
    r = run_tool(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["resumed"] and m["load_report"]["ok"] and isinstance(m["mIoU"], float)
    logs = "".join(p.read_text() for p in (tmp_path / "run").glob("*/*.log"))
    assert "Auto resumed from the latest checkpoint" in logs and "resumed epoch: 0, iter: " in logs


def test_safe_loader_refuses_foreign_objects(tmp_path):
    import torch

    from transfer.safe_pickle import safe_load

    torch.save({"state_dict": {"w": torch.ones(2)}, "hook": print}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match=r"refusing to unpickle (__builtin__|builtins)\.print"):
        safe_load(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "iter": 3}, tmp_path / "ok.pth")
    assert safe_load(tmp_path / "ok.pth")["iter"] == 3
