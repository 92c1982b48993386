"""The trainer end to end: exact resume after kill -9, the demo config learns, clear errors."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from transfer.classification.features import build_backbone, extract_features
from transfer.classification.knn import knn_predict, topk_accuracy

from .conftest import ROOT, run_pretrain

TINY = ["method.arch=resnet18", "method.proj={hidden: 32, out: 32}", "method.pred_hidden=16", "hier.head_reduce=[8, 8, 8]",
        "expand.dim=8", "augment.size=32", "optim.batch_size=16", "optim.epochs=2", "train.log_every=1"]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simsiam", "mocov2"])
def test_kill_9_and_resume_gives_identical_weights(demo_world, tmp_path, name):
    cfg = f"configs/pretrain/{name}-hier_resnet18_1xb64-coslr-4e_demo.yaml"
    data = demo_world / "imagefolder/train"  # 160 images -> 10 steps per epoch, 20 steps in all
    straight = run_pretrain(cfg, data, tmp_path / "a", *TINY)
    assert straight.returncode == 0, straight.stderr[-2000:]

    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "pretrain.train", str(ROOT / cfg), f"data.train={data}", f"train.output={out}",
           "data.workers=0", "train.ckpt_every_steps=1", *TINY]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and sum(1 for _ in log.open()) >= 7:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "last.pth", weights_only=True)["global_step"]
    assert 5 <= killed_at < 20
    resumed = run_pretrain(cfg, data, out, *TINY, "train.ckpt_every_steps=1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'last.pth'} at step {killed_at}" in resumed.stderr
    a, b = _weights(tmp_path / "a/last.pth"), _weights(out / "last.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_demo_config_learns_and_beats_random_in_knn(demo_world, demo_pretrained):
    ckpt, run = demo_pretrained
    summary = json.loads((run / "pretrain_summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"] - 0.05
    stages = summary["stage_loss_first"]
    assert sorted(stages) == [f"loss/stage{s}" for s in (1, 2, 3, 4)]
    for k in stages:  # every intermediate-stage loss is logged and falls
        assert summary["stage_loss_last"][k] < stages[k], k
    log_keys = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert {"loss/stage1", "loss/stage2", "loss/stage3", "loss/stage4", "lr"} <= set(log_keys)
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())

    accs = {}
    for name, weights in (("random", "random"), ("pretrained", str(ckpt))):
        model, _ = build_backbone(weights, "resnet18")
        tf, ty, classes = extract_features(model, demo_world / "imagefolder/train", 64, workers=0)
        vf, vy, _ = extract_features(model, demo_world / "imagefolder/val", 64, workers=0)
        accs[name] = topk_accuracy(knn_predict(tf, ty, vf, len(classes), k=20), vy)["top1"]
    assert accs["pretrained"] > accs["random"] + 5, accs


def test_nonfinite_loss_stops_with_a_clear_message(demo_world, tmp_path):
    r = run_pretrain("configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml", demo_world / "imagefolder/train",
                     tmp_path, *TINY, "optim.lr=1e30", "optim.epochs=1")
    assert r.returncode != 0
    assert "NonFiniteLossError" in r.stderr and "last good checkpoint" in r.stderr


def test_config_errors_name_the_key(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pretrain.train", str(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml"),
                        "optim.lrr=0.1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown key 'lrr'" in r.stderr
    r = run_pretrain("configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml", tmp_path / "nope", tmp_path / "o")
    assert r.returncode != 0 and "is not a folder" in r.stderr
