"""The trainer end to end: exact resume after kill -9, the demo config learns, clear errors."""
import json
import math
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
@pytest.mark.parametrize("name,augment", [("simsiam", "loader"), ("mocov2", "loader"), ("simsiam", "train")])
def test_kill_9_and_resume_gives_identical_weights(demo_world, tmp_path, name, augment):
    cfg = f"configs/pretrain/{name}-hier_resnet18_1xb64-coslr-4e_demo.yaml"
    data = demo_world / "imagefolder/train"  # 160 images -> 10 steps per epoch, 20 steps in all
    tiny = [*TINY, f"augment.device={augment}"]
    straight = run_pretrain(cfg, data, tmp_path / "a", *tiny)
    assert straight.returncode == 0, straight.stderr[-2000:]

    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "pretrain.train", str(ROOT / cfg), f"data.train={data}", f"train.output={out}",
           "data.workers=0", "train.ckpt_every_steps=1", *tiny]
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
    resumed = run_pretrain(cfg, data, out, *tiny, "train.ckpt_every_steps=1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'last.pth'} at step {killed_at}" in resumed.stderr
    a, b = _weights(tmp_path / "a/last.pth"), _weights(out / "last.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_demo_config_learns_and_beats_random_in_knn(demo_world, demo_pretrained, knn_eval_data):
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
        tf, ty, classes = extract_features(model, knn_eval_data / "train", 64, workers=0)
        vf, vy, _ = extract_features(model, knn_eval_data / "val", 64, workers=0)
        accs[name] = topk_accuracy(knn_predict(tf, ty, vf, len(classes), k=20), vy)["top1"]
    # 8 pretrainings (4 seeds, before and after the float photometric path): +7 to +11 points here; noise +-2
    assert accs["pretrained"] > accs["random"] + 3, accs


@pytest.mark.slow
def test_nonfinite_loss_stops_with_a_clear_message(demo_world, tmp_path):
    r = run_pretrain("configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml", demo_world / "imagefolder/train",
                     tmp_path, *TINY, "optim.lr=1e30", "optim.epochs=1")
    assert r.returncode != 0
    assert "NonFiniteLossError" in r.stderr and "last good checkpoint" in r.stderr


def test_numbers_written_as_strings_become_floats():
    """YAML 1.1 reads 1e-4 as a string; the config turns it into the number (not an int, not an error)."""
    from pretrain.config.config import ConfigError, load_config

    cfg = load_config(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml", ["optim.weight_decay=1e-4", "optim.lr=5e-2"])
    assert cfg["optim"]["weight_decay"] == 1e-4 and cfg["optim"]["lr"] == 0.05 and isinstance(cfg["optim"]["lr"], float)
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        load_config(None, ["optim.lr=fast"])


def test_config_errors_name_the_key(tmp_path, capsys):
    """`python -m pretrain.train`'s main, in process: exit 2 naming an unknown key, 1 naming a missing data folder."""
    from pretrain.train import main

    cfg = str(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml")
    assert main([cfg, "optim.lrr=0.1"]) == 2 and "unknown key 'lrr'" in capsys.readouterr().err
    assert main([cfg, f"data.train={tmp_path / 'nope'}", f"train.output={tmp_path / 'o'}"]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_batched_photometric_path_trains_like_the_per_image_path(demo_world, tmp_path):
    """augment.device=train (workers: crop/flip only; the trainer: the rest, batched) follows the same loss
    trajectory and ends at the same weights as augment.device=loader."""
    from pretrain.config.config import load_config
    from pretrain.engine.trainer import Pretrainer

    runs = {}
    for mode in ("loader", "train"):
        cfg = load_config(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                          [*TINY, f"augment.device={mode}", "train.max_steps=3", "data.workers=0",
                           f"data.train={demo_world / 'imagefolder/train'}", f"train.output={tmp_path / mode}"])
        trainer = Pretrainer(cfg)
        assert (trainer.device_augment is not None) == (mode == "train")
        trainer.run()
        runs[mode] = ([r["loss"] for r in trainer.history], trainer.model.state_dict())
    (la, wa), (lb, wb) = runs["loader"], runs["train"]
    assert len(la) == 3 and la == pytest.approx(lb, rel=1e-5, abs=1e-7)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.slow
def test_two_processes_with_the_batched_path_match_one_process(demo_world, tmp_path):
    """torchrun, 2 CPU processes (gloo, SyncBN), augment.device=train, vs one process with the per-image
    path on the same global batch: the same weights after 2 steps (float32 rounding differences between
    the two reductions grow step by step: 1e-6 after one step, 1e-5 after two, 1e-4 after three)."""
    cfg = str(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml")
    common = [f"data.train={demo_world / 'imagefolder/train'}", "data.workers=0", "train.max_steps=2", "train.device=cpu", *TINY]
    one = run_pretrain(cfg, demo_world / "imagefolder/train", tmp_path / "one", *TINY, "train.max_steps=2", "augment.device=loader")
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631",
                          "-m", "pretrain.train", cfg, *common, f"train.output={tmp_path / 'two'}", "augment.device=train"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one/last.pth"), _weights(tmp_path / "two/last.pth")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def _small_folder(demo_world, root, per_class):
    import shutil

    for cls in sorted(p.name for p in (demo_world / "imagefolder/train").iterdir())[:2]:
        shutil.copytree(demo_world / "imagefolder/train" / cls, root / cls, ignore=lambda d, f: sorted(f)[per_class:])
    return root



@pytest.mark.parametrize("name", ["mocov2", "byol"])
def test_a_stopped_run_resumes_to_the_same_weights_in_process(demo_world, tmp_path, name):
    """Fast twin of the kill -9 test: 2 epochs of 3 steps straight, or stopped after step 4 (mid-epoch) and
    resumed by a new trainer: identical weights, optimizer state, queues / target network and step."""
    from pretrain.config.config import load_config
    from pretrain.engine.trainer import Pretrainer

    data = _small_folder(demo_world, tmp_path / "data", 6)
    cfg_path = ROOT / f"configs/pretrain/{name}-hier_resnet18_1xb64-coslr-4e_demo.yaml"
    over = [*TINY, "optim.batch_size=4", "data.workers=0", "method.queue_size=16", f"data.train={data}"]
    states = {}
    for run, extra in (("straight", []), ("stopped", ["train.max_steps=4", "train.ckpt_every_steps=1"]), ("resumed", [])):
        out = tmp_path / ("straight" if run == "straight" else "b")
        trainer = Pretrainer(load_config(cfg_path, [*over, *extra, f"train.output={out}"]))
        trainer.run()
        states[run] = (trainer.global_step, trainer.model.state_dict(), trainer.optimizer.state_dict()["state"])
    assert states["stopped"][0] == 4 and states["straight"][0] == states["resumed"][0] == 6
    (_, wa, oa), (_, wb, ob) = states["straight"], states["resumed"]
    assert wa.keys() == wb.keys() and any("queue" in k or "target" in k for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert oa.keys() == ob.keys() and all(torch.equal(oa[i]["momentum_buffer"], ob[i]["momentum_buffer"]) for i in oa)


def test_the_trainer_scales_decays_and_fixes_the_predictor_lr_and_updates_the_ema(demo_world, tmp_path):
    """SimSiam + method, 24 images, batch 8 -> 3 steps per epoch, 2 epochs, lr 0.05: every step's lr is
    0.05 x 8/256 x 0.5 (1 + cos(pi e / 2)) for its epoch e; the predictors keep the base lr (the authors'
    fix_pred_lr) and are exactly the optimizer's 'pred' group. BYOL, one step: target = 0.99 target0 + 0.01 online."""
    import copy

    from pretrain.config.config import load_config
    from pretrain.engine.trainer import Pretrainer

    data = _small_folder(demo_world, tmp_path / "data", 12)
    over = [*TINY, "optim.batch_size=8", "optim.lr=0.05", "data.workers=0", f"data.train={data}"]
    t = Pretrainer(load_config(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                               [*over, f"train.output={tmp_path / 'a'}", "optim.warmup_epochs=0"]))
    t.run()
    base = 0.05 * 8 / 256
    assert [r["lr"] for r in t.history] == pytest.approx([base] * 3 + [base * 0.5 * (1 + math.cos(math.pi / 2))] * 3)
    groups = {g["name"]: g for g in t.optimizer.param_groups}
    assert groups["pred"]["lr"] == pytest.approx(base) and groups["decay"]["lr"] == pytest.approx(base * 0.5)
    assert {id(p) for p in groups["pred"]["params"]} == {id(p) for p in t.model.predictors.parameters()}

    b = Pretrainer(load_config(ROOT / "configs/pretrain/byol-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                               [*over, f"train.output={tmp_path / 'b'}", "train.max_steps=1"]))
    target0 = copy.deepcopy(b.model.target.state_dict())
    b.run()
    online, target = dict(b.model.online.named_parameters()), dict(b.model.target.named_parameters())
    assert b.model.momentum == 0.99 and len(online) > 50
    for k, p in target.items():
        torch.testing.assert_close(p, 0.99 * target0[k] + 0.01 * online[k].detach(), rtol=1e-5, atol=1e-7, msg=k)


def test_warm_up_is_linear_over_its_steps_then_the_cosine_runs_per_epoch(demo_world, tmp_path):
    """warmup_epochs 0.5 of 3 steps = round(1.5) = 2 steps at base x 1/2, base x 2/2; then the cosine over the
    remaining 4 of 6 steps, evaluated at each epoch's first step after warm-up (steps 2 and 3): t = 0 and 1/4."""
    from pretrain.config.config import load_config
    from pretrain.engine.trainer import Pretrainer

    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = Pretrainer(load_config(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml",
                               [*TINY, "optim.batch_size=8", "optim.lr=0.05", "optim.warmup_epochs=0.5", "data.workers=0",
                                f"data.train={data}", f"train.output={tmp_path / 'a'}"]))
    t.run()
    base = 0.05 * 8 / 256
    cos = base * 0.5 * (1 + math.cos(math.pi / 4))
    assert [r["lr"] for r in t.history] == pytest.approx([base / 2, base, base, cos, cos, cos])
