"""Segmentation transfer on real MMSegmentation (marker `mmseg`): every shipped config builds with the
torchvision-style backbone, the demo preset fine-tunes from a raw pretraining checkpoint and learns,
and a killed run resumes through the safe checkpoint loader."""
import json
import re

import pytest

from .conftest import ROOT, kill_when, run_tool, signal_when

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
    adapt_to_run(cfg, cfg.copy(), 1, None)
    model = MODELS.build(cfg.model)
    assert hasattr(model.backbone, "conv1") and not hasattr(model.backbone, "stem")  # plain 7x7 stem, torchvision keys


def _voc_preset():
    from mmengine.config import Config

    from transfer.segmentation.protocol import resolve_config

    return Config.fromfile(str(resolve_config("fcn_r50-d8_4xb4-20k_voc12aug-512x512")))


# Hand-computed from the preset (4 GPUs x 4 = 16 images, lr 0.01, 20k iterations, PolyLR floor 1e-4, intervals 2k):
# (processes, --batch-size, rule) -> (per-process batch, lr, iterations, eta_min, interval, accumulation, standard?)
SEG_CASES = {
    (1, None, "linear"): (16, 0.01, 20000, 1e-4, 2000, 1, True),
    (2, None, "linear"): (8, 0.01, 20000, 1e-4, 2000, 1, True),
    (4, None, "linear"): (4, 0.01, 20000, 1e-4, 2000, 1, True),
    (8, None, "linear"): (2, 0.01, 20000, 1e-4, 2000, 1, True),
    (1, 4, "linear"): (4, 0.0025, 80000, 2.5e-5, 8000, 1, False),
    (2, 8, "linear"): (4, 0.005, 40000, 5e-5, 4000, 1, False),
    (4, 32, "linear"): (8, 0.02, 10000, 2e-4, 1000, 1, False),
    (8, 8, "linear"): (1, 0.005, 40000, 5e-5, 4000, 1, False),
    (1, 4, "accumulate"): (4, 0.01, 80000, 1e-4, 8000, 4, False),
    (2, 8, "accumulate"): (4, 0.01, 40000, 1e-4, 4000, 2, False),
}


@pytest.mark.parametrize("case", sorted(SEG_CASES, key=str), ids=str)
def test_protocol_adaptation_keeps_or_scales_the_preset(case):
    from transfer.segmentation.protocol import adapt_to_run, protocol_changes

    world, batch, rule = case
    per, lr, iters, eta_min, interval, acc, standard = SEG_CASES[case]
    preset, cfg = _voc_preset(), _voc_preset()
    changes, equivalent = adapt_to_run(cfg, preset, world, batch, rule == "accumulate")
    sched = cfg.param_scheduler[0]
    got = (cfg.train_dataloader.batch_size, cfg.optim_wrapper.optimizer.lr, cfg.train_cfg.max_iters, sched["eta_min"],
           cfg.train_cfg.val_interval, cfg.optim_wrapper.get("accumulative_counts", 1))
    assert got == pytest.approx((per, lr, iters, eta_min, interval, acc))
    assert sched["end"] == iters and cfg.default_hooks.checkpoint.interval == interval
    all_changes = changes + protocol_changes(preset, cfg, skip=changes + equivalent)
    assert (all_changes == []) == standard, all_changes
    if world == 1:
        norm = "model.backbone.norm_cfg.type: SyncBN -> BN (one process)"
        assert norm in (equivalent if standard else changes) and cfg.model.backbone.norm_cfg.type == "BN"


def test_a_batch_override_goes_through_the_same_rule_as_batch_size():
    from transfer.segmentation.protocol import adapt_to_run

    preset, by_flag, by_override = _voc_preset(), _voc_preset(), _voc_preset()
    adapt_to_run(by_flag, preset, 2, 4)
    by_override.merge_from_dict({"train_dataloader.batch_size": 2})  # per process, as mmseg reads it
    adapt_to_run(by_override, preset, 2, None)
    for key in ("train_dataloader.batch_size", "optim_wrapper.optimizer.lr", "train_cfg.max_iters", "train_cfg.val_interval"):
        a, b = by_flag, by_override
        for part in key.split("."):
            a, b = a[part], b[part]
        assert a == b, key
    assert by_flag.param_scheduler == by_override.param_scheduler


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
    assert m["protocol"] == "demo" and m["load_report"]["ok"] and m["resumed"] is False  # a fresh run
    assert m["load_report"]["verified_identical"] == m["load_report"]["backbone_tensors"] == 100
    assert set(m["per_class_IoU"]) >= {"background", "aeroplane", "bicycle", "bird", "boat"}
    assert m["metrics"]["mIoU"] > VOC_MIOU_MIN, m["per_class_IoU"]


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
    assert m["resumed"] and m["load_report"]["ok"] and isinstance(m["metrics"]["mIoU"], float)
    logs = "".join(p.read_text() for p in (tmp_path / "run").glob("*/*.log"))
    assert "Auto resumed from the latest checkpoint" in logs and "resumed epoch: 0, iter: " in logs


@pytest.mark.slow
def test_a_preemption_signal_leaves_a_checkpoint_and_the_rerun_resumes_from_it(demo_world, tmp_path):
    """SIGTERM once mmengine has written its scalars with no periodic checkpoint before the end: iter_<n>.pth and
    last_checkpoint at the next iteration, exit 75; the rerun resumes there (through the safe loader) and finishes."""
    import signal

    import torch
    from torchvision import models

    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    run = tmp_path / "run"
    args = _seg(demo_world, run, tmp_path / "tv.pth", "--cfg-options", "train_cfg.max_iters=40",
                "train_cfg.val_interval=40", "default_hooks.checkpoint.interval=1000")
    rc, out = signal_when(args, lambda: any(run.glob("*/vis_data/scalars.json")), tmp_path / "first.log", signal.SIGTERM)
    assert rc == 75, out[-3000:]
    m = re.search(r"preempted: SIGTERM received: stopped after writing (\S+iter_(\d+)\.pth) at iteration (\d+)", out)
    assert m and (run / "last_checkpoint").read_text() == m.group(1) and m.group(2) == m.group(3), out[-3000:]
    assert 1 <= int(m.group(3)) < 40 and not (run / "metrics.json").exists()
    r = run_tool(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["resumed"]
    logs = "".join(p.read_text() for p in run.glob("*/*.log"))
    assert f"resumed epoch: 0, iter: {m.group(3)}" in logs


def test_safe_loader_refuses_foreign_objects(tmp_path):
    import torch

    from transfer.safe_pickle import safe_load

    torch.save({"state_dict": {"w": torch.ones(2)}, "hook": print}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match=r"refusing to unpickle (__builtin__|builtins)\.print"):
        safe_load(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "iter": 3}, tmp_path / "ok.pth")
    assert safe_load(tmp_path / "ok.pth")["iter"] == 3


def test_torchvision_weights_need_rgb_imagenet_input():
    from transfer.segmentation.protocol import check_input_format

    cfg = _voc_preset()
    assert check_input_format(cfg) == []
    cfg.model.data_preprocessor.bgr_to_rgb = False
    with pytest.raises(ValueError, match="bgr_to_rgb=False"):
        check_input_format(cfg)
    cfg = _voc_preset()
    cfg.model.data_preprocessor.std = [1.0, 1.0, 1.0]
    assert check_input_format(cfg, force=True)[0].startswith("input format mismatch (forced)")


@pytest.mark.slow
def test_standard_voc12aug_preset_trains_on_the_demo_world(demo_world, tmp_path):
    """The shipped standard preset, unchanged but for the batch (linear rule) and a 2-iteration schedule,
    reads train.txt + aug.txt (SegmentationClassAug) and evaluates on val."""
    r = run_tool("tools/run_transfer.py", "--task", "voc_seg", "--weights", "random", "--data-root", str(demo_world / "VOC2012"),
                 "--output", str(tmp_path), "--batch-size", "2", "--cfg-options", "train_cfg.max_iters=2",
                 "train_cfg.val_interval=2", "param_scheduler.0.end=2", "train_dataloader.num_workers=0",
                 "val_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
                 "val_dataloader.persistent_workers=False")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    from transfer.result import HEADER

    assert set(HEADER) <= set(m) and m["protocol"] == "non-standard" and m["total_batch"] == 2 and m["iterations"] == 2
    assert m["protocol_name"].startswith("mmselfsup VOC12aug") and m["metrics"]["mIoU"] is not None
    assert any(c.startswith("total batch 16 (4 GPUs x 4) -> 2") for c in m["protocol_changes"])


def test_per_class_iou_metric_by_hand():
    """Constructed per-image areas (intersection, union, predicted, label) of 3 classes over 2 images:
    IoU per class = sum of intersections / sum of unions (NaN for a class absent from both), mIoU = their
    nanmean, as mmseg's own metric computes it."""
    import math

    import torch

    from transfer.segmentation.hooks import PerClassIoUMetric

    metric = PerClassIoUMetric()
    metric.dataset_meta = {"classes": ("background", "cat", "dog")}
    t = lambda *v: torch.tensor(v, dtype=torch.float64)
    results = [(t(50, 10, 0), t(60, 20, 0), t(55, 15, 0), t(55, 15, 0)),   # (inter, union, pred, label) per class
               (t(30, 5, 0), t(40, 15, 0), t(35, 10, 0), t(35, 10, 0))]
    m = metric.compute_metrics(results)
    iou = {"background": 100 * 80 / 100, "cat": 100 * 15 / 35}
    assert m["IoU.background"] == pytest.approx(iou["background"]) and m["IoU.cat"] == pytest.approx(iou["cat"])
    assert math.isnan(m["IoU.dog"])
    assert m["mIoU"] == pytest.approx(sum(iou.values()) / 2, abs=0.01)  # mmseg rounds to 2 decimals
    assert m["aAcc"] == pytest.approx(100 * 95 / 115, abs=0.01)


def test_backbone_load_hook_compares_the_model_with_the_users_checkpoint(tmp_path):
    """The hook reads the user's checkpoint itself (not the file handed to mmengine) and compares every
    backbone tensor: identical -> ok and counted; one tensor off -> the run stops naming it."""
    from types import SimpleNamespace

    import torch
    from torchvision import models

    from transfer.segmentation.hooks import BackboneLoadHook

    torch.manual_seed(0)
    net = models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "user.pth")
    backbone = models.resnet18(weights=None)
    backbone.load_state_dict(net.state_dict())
    del backbone.fc
    runner = SimpleNamespace(iter=0, model=SimpleNamespace(backbone=backbone), work_dir=str(tmp_path))
    BackboneLoadHook(str(tmp_path / "user.pth")).before_train(runner)
    assert runner.load_report["ok"] and runner.load_report["verified_identical"] == runner.load_report["backbone_tensors"] == 100
    with torch.no_grad():
        backbone.layer3[1].conv2.weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(RuntimeError, match=r"not identical \['layer3.1.conv2.weight'\]"):
        BackboneLoadHook(str(tmp_path / "user.pth")).before_train(runner)
