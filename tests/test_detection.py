"""Detection transfer on real detectron2 (marker `detectron2`): every shipped config builds, the demo
presets fine-tune from a raw pretraining checkpoint and learn, eval-only and resume work."""
import json
import re

import pytest

from .conftest import ROOT, kill_when, run_tool, signal_when

pytestmark = pytest.mark.detectron2
CONFIGS = sorted(p.stem for p in (ROOT / "configs/transfer/detectron2").glob("*.yaml") if not p.stem.startswith("Base"))
# A broken pipeline (classes shuffled, boxes in the wrong frame, no learning) stays near AP50 0; this run reaches ~45.
VOC_AP50_MIN = 20.0


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_merges_and_builds(name):
    from detectron2.modeling import build_model

    import transfer.detectron2.heads  # noqa: F401
    from transfer.detectron2.protocol import adapt_to_run, load_preset, resolve_config

    cfg = load_preset(resolve_config(name))
    adapt_to_run(cfg, cfg.clone(), 1, None)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert model.roi_heads.box_predictor.cls_score.out_features == cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1
    if cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm":
        assert type(model.roi_heads.res5[-1]).__name__ == "BatchNorm2d"  # the extra norm after res5
    if "_moco" in name or "_paper" in name or name.startswith("demo"):
        assert cfg.INPUT.FORMAT == "RGB" and not cfg.MODEL.RESNETS.STRIDE_IN_1X1
        assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.280, 103.530] and list(cfg.MODEL.PIXEL_STD) == [58.395, 57.120, 57.375]
    if not name.startswith("demo"):
        assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.MODEL.BACKBONE.FREEZE_AT == 0 and cfg.TEST.PRECISE_BN.ENABLED


def test_standard_voc_preset_is_moco_protocol():
    from transfer.detectron2.protocol import load_preset, resolve_config

    cfg = load_preset(resolve_config("pascal_voc_R_50_C4_24k_moco"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == (0.02, 24000, (18000, 22000), 100)
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == tuple(range(480, 801, 32)) and cfg.INPUT.MIN_SIZE_TEST == 800
    assert cfg.MODEL.RESNETS.NORM == "naiveSyncBN" and cfg.MODEL.RPN.PRE_NMS_TOPK_TEST == 6000
    paper = load_preset(resolve_config("pascal_voc_R_50_C4_24k_paper"))
    assert paper.SOLVER.BASE_LR == 0.003 and tuple(paper.SOLVER.STEPS) == (16800, 21600)


# Hand-computed from pascal_voc_R_50_C4_24k_moco (16 images, lr 0.02, 24k iterations, steps 18k/22k, warm-up 100,
# PreciseBN 200 iterations): (processes, --batch-size) -> (total, lr, iterations, steps, warm-up, PreciseBN, standard?)
DET_CASES = {
    (1, None): (16, 0.02, 24000, (18000, 22000), 100, 200, True),
    (2, None): (16, 0.02, 24000, (18000, 22000), 100, 200, True),
    (4, None): (16, 0.02, 24000, (18000, 22000), 100, 200, True),
    (8, None): (16, 0.02, 24000, (18000, 22000), 100, 200, True),
    (1, 8): (8, 0.01, 48000, (36000, 44000), 200, 400, False),
    (2, 8): (8, 0.01, 48000, (36000, 44000), 200, 400, False),
    (4, 32): (32, 0.04, 12000, (9000, 11000), 50, 100, False),
    (8, 8): (8, 0.01, 48000, (36000, 44000), 200, 400, False),
}


@pytest.mark.parametrize("case", sorted(DET_CASES, key=str), ids=str)
def test_protocol_adaptation_keeps_or_scales_the_preset(case):
    from transfer.detectron2.protocol import adapt_to_run, load_preset, protocol_changes, protocol_label, resolve_config

    world, batch = case
    total, lr, iters, steps, warmup, precise, standard = DET_CASES[case]
    preset = load_preset(resolve_config("pascal_voc_R_50_C4_24k_moco"))
    cfg = preset.clone()
    changes, equivalent = adapt_to_run(cfg, preset, world, batch)
    s = cfg.SOLVER
    assert s.BASE_LR == pytest.approx(lr)
    assert (s.IMS_PER_BATCH, s.MAX_ITER, tuple(s.STEPS), s.WARMUP_ITERS, cfg.TEST.PRECISE_BN.NUM_ITER) == \
        (total, iters, steps, warmup, precise)
    changes += protocol_changes(preset, cfg, skip=changes + equivalent)
    assert (protocol_label(cfg, changes) == "standard") == standard, changes
    if world == 1:
        norm = "MODEL.RESNETS.NORM: naiveSyncBN -> BN (one process)"
        assert norm in (equivalent if standard else changes) and cfg.MODEL.RESNETS.NORM == "BN"


def test_a_batch_override_goes_through_the_same_rule_as_batch_size():
    from transfer.detectron2.protocol import adapt_to_run, load_preset, resolve_config

    preset = load_preset(resolve_config("pascal_voc_R_50_C4_24k_moco"))
    by_flag, by_override = preset.clone(), preset.clone()
    adapt_to_run(by_flag, preset, 1, 8)
    by_override.merge_from_list(["SOLVER.IMS_PER_BATCH", 8])
    adapt_to_run(by_override, preset, 1, None)
    assert by_flag == by_override


def _voc(world, out, weights, *extra):
    return ["tools/run_transfer.py", "--task", "voc_det", "--weights", str(weights), "--config", "demo_voc_R_18_FPN",
            "--data-root", str(world), "--output", str(out), *extra]


@pytest.mark.slow
def test_voc_det_from_a_raw_checkpoint_learns(demo_world, demo_pretrained, tmp_path):
    ckpt, _ = demo_pretrained
    r = run_tool(*_voc(demo_world, tmp_path, ckpt, "SOLVER.MAX_ITER", "240", "SOLVER.STEPS", "(180,220)"))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["protocol"] == "demo" and "SOLVER.MAX_ITER: 80 -> 240" in m["protocol_changes"] and m["resumed"] is False
    assert "MODEL.RESNETS.NORM: naiveSyncBN -> BN (one process)" in m["equivalent_changes"]  # whole batch in one process
    rep = m["load_report"]
    assert rep["ok"] and rep["backbone_tensors"] == rep["verified_identical"] == 100  # ResNet-18, every tensor bit-identical
    assert m["source"]["layout"] == "hier-aug" and m["classes"] == ["aeroplane", "bicycle", "bird", "boat"]
    assert {"AP", "AP50", "AP75"} <= set(m["metrics"]["bbox"]) and m["metrics"]["bbox"]["AP50"] > VOC_AP50_MIN, m["metrics"]
    assert m["boxes"] == {"dropped": 0, "clipped": 0, "files": {}}  # the demo world's boxes lie inside their images
    # eval-only on the finished run reloads its final checkpoint and gives the same numbers
    r = run_tool(*_voc(demo_world, tmp_path, ckpt, "--eval-only", "SOLVER.MAX_ITER", "240", "SOLVER.STEPS", "(180,220)"))
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["eval_only"] and again["metrics"]["bbox"]["AP50"] == pytest.approx(m["metrics"]["bbox"]["AP50"], abs=1e-6)


@pytest.mark.slow
def test_coco_instseg_reports_box_and_mask_ap(demo_world, demo_pretrained, tmp_path):
    ckpt, _ = demo_pretrained
    r = run_tool("tools/run_transfer.py", "--task", "coco_instseg", "--weights", str(ckpt), "--config", "demo_coco_R_18_FPN",
                 "--data-root", str(demo_world), "--output", str(tmp_path), "SOLVER.MAX_ITER", "160", "SOLVER.STEPS", "(120,150)")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    for kind in ("bbox", "segm"):
        assert set(m["metrics"][kind]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert m["metrics"][kind]["AP"] > 0 and m["metrics"][kind]["AP50"] > 0, m["metrics"][kind]
    assert m["load_report"]["ok"] and m["classes"] == ["aeroplane", "bicycle", "bird", "boat"]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(demo_world, tmp_path):
    import torch
    from torchvision import models

    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    args = _voc(demo_world, tmp_path / "run", tmp_path / "tv.pth", "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "6",
                "TEST.PRECISE_BN.ENABLED", "False")
    kill_when(args, tmp_path / "run/last_checkpoint")  # tagged once model_0000005.pth is complete
    assert not (tmp_path / "run/metrics.json").exists()
    r = run_tool(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"resumed from .*model_00000(05|11)\.pth at iteration (6|12)", r.stdout), r.stdout[-2000:]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["resumed"] and m["load_report"]["ok"]  # the report of the run's start is kept


@pytest.mark.slow
def test_a_preemption_signal_leaves_a_checkpoint_and_the_rerun_resumes_from_it(demo_world, tmp_path):
    """SIGUSR1 after iteration 20 (detectron2 writes events.jsonl then) with no periodic checkpoint before the end:
    the run writes model_<iter>.pth at the next iteration, exits 75; the rerun resumes there and finishes."""
    import signal

    import torch
    from torchvision import models

    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    run = tmp_path / "run"
    args = _voc(demo_world, run, tmp_path / "tv.pth", "SOLVER.MAX_ITER", "60", "SOLVER.STEPS", "(40,50)", "SOLVER.CHECKPOINT_PERIOD", "1000",
                "TEST.PRECISE_BN.ENABLED", "False")
    written = lambda: (run / "events.jsonl").is_file() and (run / "events.jsonl").stat().st_size > 0  # noqa: E731
    rc, out = signal_when(args, written, tmp_path / "first.log", signal.SIGUSR1)
    assert rc == 75, out[-3000:]
    m = re.search(r"preempted: SIGUSR1 received: stopped after writing (\S+model_(\d+)\.pth) at iteration (\d+)", out)
    assert m and (run / "last_checkpoint").read_text().strip() == f"model_{m.group(2)}.pth", out[-3000:]
    at = int(m.group(3))
    assert 20 <= at < 60 and int(m.group(2)) == at - 1 and not (run / "metrics.json").exists()
    r = run_tool(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"model_{m.group(2)}.pth at iteration {at}" in r.stdout, r.stdout[-2000:]
    assert json.loads((run / "metrics.json").read_text())["resumed"]


def test_bad_weights_fail_before_training(demo_world, tmp_path, capsys):
    from transfer.detectron2.train_net import main

    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    rc = main("voc_det", _voc(demo_world, tmp_path / "run", tmp_path / "bad.pth")[3:])
    err = capsys.readouterr().err
    assert rc == 1 and "bad.pth" in err and "not a readable PyTorch checkpoint" in err
    assert not (tmp_path / "run/metrics.json").exists()


@pytest.mark.parametrize("name,fmt", [("pascal_voc_R_50_C4_24k_moco", "torchvision"), ("pascal_voc_R_50_C4_24k", "caffe2"),
                                      ("coco_R_50_FPN_1x_moco", "torchvision"), ("coco_R_50_C4_1x", "caffe2"),
                                      ("demo_voc_R_18_FPN", "torchvision")])
def test_presets_declare_their_input_format(name, fmt):
    from transfer.detectron2.protocol import check_input_format, input_format, load_preset, resolve_config

    cfg = load_preset(resolve_config(name))
    assert input_format(cfg) == fmt
    other = "caffe2" if fmt == "torchvision" else "torchvision"
    with pytest.raises(ValueError, match="--allow-input-mismatch"):
        check_input_format(cfg, other, name)
    forced = check_input_format(cfg, other, name, force=True)
    assert len(forced) == 1 and forced[0].startswith("input format mismatch (forced)")
    assert check_input_format(cfg, fmt, name) == []


def test_torchvision_weights_with_a_caffe2_preset_are_refused(tmp_path):
    import torch
    from torchvision import models

    torch.save(models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    args = ["tools/run_transfer.py", "--task", "voc_det", "--weights", str(tmp_path / "r50.pth"), "--config",
            "pascal_voc_R_50_C4_24k", "--output", str(tmp_path / "run")]
    r = run_tool(*args)
    assert r.returncode == 1 and "use --config pascal_voc_R_50_C4_24k_moco" in r.stderr, r.stderr[-2000:]
    assert "torchvision-style" in r.stderr and not (tmp_path / "run/metrics.json").exists()


@pytest.mark.parametrize("name,label", [("pascal_voc_R_50_C4_24k_moco", "standard"), ("pascal_voc_R_50_C4_24k_paper", "paper"),
                                        ("coco_R_50_C4_1x_paper", "paper"), ("demo_voc_R_18_FPN", "demo")])
def test_presets_are_labelled_by_what_they_are(name, label):
    from transfer.detectron2.protocol import load_preset, protocol_label, resolve_config

    cfg = load_preset(resolve_config(name))
    assert protocol_label(cfg, []) == label
    assert protocol_label(cfg, ["SOLVER.BASE_LR: 0.02 -> 0.01"]) == ("demo" if label == "demo" else "non-standard")


@pytest.mark.parametrize("task", ["voc_det", "coco_det", "coco_instseg"])
def test_metrics_file_carries_the_evaluators_numbers_where_the_report_reads_them(tmp_path, task):
    """Constructed evaluator results (detectron2's layout) -> metrics.json -> the report's columns: each
    number arrives unchanged in its own column (box vs mask, AP vs AP50 vs AP75), NaN as null."""
    from benchmarks.report import COLUMNS
    from transfer.detectron2.protocol import load_preset, resolve_config
    from transfer.detectron2.results import write_metrics

    cfg = load_preset(resolve_config("demo_voc_R_18_FPN" if task == "voc_det" else "demo_coco_R_18_FPN"))
    cfg.OUTPUT_DIR, cfg.SEED = str(tmp_path), 3
    info = {"task": task, "weights": "w.pkl", "protocol": "demo", "changes": [], "config": "c", "source": {}, "eval_only": False,
            "equivalent_changes": [], "started": 0.0}
    box = {"AP": 41.5, "AP50": 70.25, "AP75": 40.125, "APs": float("nan"), "AP-aeroplane": 12.5, "AP-bicycle": float("nan")}
    results = {"bbox": box} if task != "coco_instseg" else {"bbox": box, "segm": {"AP": 25.75, "AP50": 50.5, "AP75": 20.0, "AP-aeroplane": 3.0}}
    write_metrics(cfg, info, results, None, ["aeroplane", "bicycle"], resumed=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    from transfer.result import HEADER

    assert set(HEADER) <= set(m) and m["seed"] == 3 and m["metrics"]["bbox"] == {"AP": 41.5, "AP50": 70.25, "AP75": 40.125, "APs": None}
    assert m["per_class_AP"]["bbox"] == {"aeroplane": 12.5, "bicycle": None}
    want = {"voc_det": {"AP50": 70.25, "AP": 41.5, "AP75": 40.125}, "coco_det": {"APbb": 41.5, "APbb50": 70.25, "APbb75": 40.125},
            "coco_instseg": {"APbb": 41.5, "APmk": 25.75}}[task]
    assert {col: read(m) for col, read in COLUMNS[task]} == want
    assert "AP" not in m  # the report reads metrics only (no top-level copies)


@pytest.mark.parametrize("given", ["pkl", "raw"])
def test_a_detection_run_reads_its_weights_file_once_and_loads_the_same_values(tmp_path, monkeypatch, given):
    """`prepare_weights` reads --weights once; the checkpointer takes the record (SafeCheckpointer.use)
    instead of reading the .pkl again, and the model gets exactly the file's values. Before: the .pkl was
    read twice (prepare_weights and the checkpointer), the converted weights_d2.pkl once more."""
    import numpy as np
    import torch
    from detectron2.modeling import build_model
    from torchvision import models

    import transfer.detectron2.heads  # noqa: F401
    import transfer.safe_pickle as sp
    from transfer.convert import to_detectron2, write_detectron2_pkl
    from transfer.detectron2 import checkpoint as ck
    from transfer.detectron2.protocol import load_preset, resolve_config
    from transfer.weights import extract_backbone

    torch.manual_seed(0)
    raw = tmp_path / "r18.pth"
    torch.save({k: v for k, v in models.resnet18().state_dict().items() if not k.startswith("fc.")}, raw)
    pkl = tmp_path / "r18.pkl"
    write_detectron2_pkl(extract_backbone(raw), pkl)
    reads = []
    real = sp.load_arrays
    monkeypatch.setattr(ck, "load_arrays", lambda p: reads.append(str(p)) or real(p))
    weights = ck.prepare_weights(str(pkl if given == "pkl" else raw), tmp_path / "run")
    weights.write()
    cfg = load_preset(resolve_config("demo_voc_R_18_FPN"))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", weights.value
    model = build_model(cfg)
    ck.SafeCheckpointer.use(weights)
    checkpointer = ck.SafeCheckpointer(model, str(tmp_path / "run"))
    checkpointer.load(cfg.MODEL.WEIGHTS)
    checkpointer.load(cfg.MODEL.WEIGHTS)  # detectron2 pops and converts in place: a second load still works
    assert reads == ([str(pkl)] if given == "pkl" else [])
    report = ck.backbone_report(model, checkpointer.incompatible, weights.arrays)
    assert report["ok"] and report["verified_identical"] == report["backbone_tensors"] == 100
    want = to_detectron2(extract_backbone(raw))["res2.0.conv1.weight"]
    got = model.backbone.bottom_up.res2[0].conv1.weight.detach().numpy()
    assert np.array_equal(got, want) and isinstance(weights.arrays["res2.0.conv1.weight"], np.ndarray)
