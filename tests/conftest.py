"""Shared fixtures; tests that need an absent optional engine skip and say how to install it."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = {
    "detectron2": ("detectron2", "detectron2 is not installed: run `make setup` (it installs detectron2 from "
                   "HA_WHEELHOUSE or the official source at the pinned commit; see README, Install)"),
    "mmseg": ("mmseg", "mmsegmentation is not installed: run `make setup` (installs mmcv 2.1.0 with ops, mmengine, mmseg)"),
}


def pytest_collection_modifyitems(config, items):
    """Engine tests skip with a reason when the engine is absent; with HA_REQUIRE_ENGINES=1 (CI) the
    run fails instead, so a green run means detection and segmentation were tested."""
    for marker, (module, reason) in ENGINES.items():
        if importlib.util.find_spec(module) is None:
            needed = [item for item in items if marker in item.keywords]
            if needed and os.environ.get("HA_REQUIRE_ENGINES") == "1":
                raise pytest.UsageError(f"HA_REQUIRE_ENGINES=1 but {len(needed)} {marker} tests cannot run: {reason}")
            for item in needed:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """A small demo world (seed 0) shared by the tests of a session."""
    from benchmarks.demo_world import WorldSpec, generate
    from benchmarks.demo_world.formats import Counts

    root = tmp_path_factory.mktemp("demo_world")
    counts = Counts(cls_train_per_class=40, cls_val_per_class=15, voc07_trainval=40, voc07_test=20,
                    voc12_trainval=40, voc12_seg_val=12, coco_train=30, coco_val=12,
                    cityscapes_train=6, cityscapes_val=3, colour_train_per_class=12, colour_val_per_class=8)
    generate(root, WorldSpec(num_classes=4, seed=0), counts)
    return root


@pytest.fixture(scope="session")
def knn_eval_data(demo_world, tmp_path_factory):
    """An ImageFolder root for the "pretraining learns" checks: the demo world's train split and 150 val
    images per class of the same world. The demo world's own 60 val images leave +-6 points of binomial
    noise on a kNN accuracy, about the size of what 6 demo epochs gain over random init; 600 leave +-2."""
    from benchmarks.demo_world import WorldSpec, generate
    from benchmarks.demo_world.formats import Counts

    root = tmp_path_factory.mktemp("knn_eval")
    generate(root / "world", WorldSpec(num_classes=4, seed=0), Counts(cls_train_per_class=1, cls_val_per_class=150), ("imagefolder",))
    (root / "data").mkdir()
    (root / "data/train").symlink_to(demo_world / "imagefolder/train")
    (root / "data/val").symlink_to(root / "world/imagefolder/val")
    return root / "data"


def run_pretrain(config: str, data: Path, out: Path, *overrides: str, timeout: int = 900):
    """Run `python -m pretrain.train` in a subprocess (as a user would); returns the CompletedProcess."""
    import subprocess

    cmd = [sys.executable, "-m", "pretrain.train", str(ROOT / config), f"data.train={data}", f"train.output={out}",
           "data.workers=0", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_pretrained(demo_world, tmp_path_factory):
    """A SimSiam + method ResNet-18 briefly pretrained on the demo world (checkpoint path, run folder)."""
    out = tmp_path_factory.mktemp("pretrained")
    r = run_pretrain("configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml", demo_world / "imagefolder/train",
                     out, "optim.epochs=6", "optim.batch_size=32")
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "last.pth", out


def run_tool(*args: str, timeout: int = 1200):
    """Run `tools/run_transfer.py` (or another tool) in a subprocess, as a user would."""
    import subprocess

    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def kill_when(cmd: list[str], path_appears: Path, timeout: int = 600) -> None:
    """Start `cmd`, SIGKILL it as soon as `path_appears` exists (a checkpoint), wait for it to die."""
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.time()
    while not path_appears.exists():
        assert proc.poll() is None, f"{cmd} ended (rc {proc.returncode}) before {path_appears} appeared"
        assert time.time() - t0 < timeout, f"{path_appears} did not appear in {timeout} s"
        time.sleep(0.2)
    os.killpg(proc.pid, 9)
    proc.wait()


def signal_when(cmd: list[str], ready, log: Path, signum: int, timeout: int = 600) -> tuple[int, str]:
    """Start `cmd` (output to `log`), send it `signum` as soon as `ready()` holds, wait for it to end:
    (return code, output)."""
    import subprocess
    import time

    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        t0 = time.time()
        while not ready():
            assert proc.poll() is None, f"{cmd} ended (rc {proc.returncode}) before it was ready: {log.read_text()[-2000:]}"
            assert time.time() - t0 < timeout, f"not ready in {timeout} s"
            time.sleep(0.2)
        proc.send_signal(signum)
        rc = proc.wait(timeout=timeout)
    return rc, log.read_text()


def write_cell(suite, ckpt, task: str, seed: int, metrics: dict) -> None:
    """A finished suite cell made by hand: its metrics.json (`transfer.result`: `protocol`, `dataset`, `stage`,
    `protocol_name` in the header, everything else under `metrics`) and the run.json a finished run of the
    cell's command records (status finished, the request the suite gives the cell)."""
    import json

    from transfer.common import request_identity
    from transfer.tasks import task_of

    d = suite.cell_dir(ckpt, task, seed)
    d.mkdir(parents=True)
    header = {k: metrics[k] for k in ("protocol", "dataset", "stage", "protocol_name") if k in metrics}
    from transfer.result import SCHEMA

    (d / "metrics.json").write_text(json.dumps({"schema": SCHEMA, "task": task_of(task), "seed": seed, **header,
                                                "metrics": {k: v for k, v in metrics.items() if k not in header}}))
    request = request_identity(task_of(task), suite.cell_args(ckpt, task, seed))
    (d / "run.json").write_text(json.dumps({"kind": f"transfer:{task_of(task)}", "status": "finished", "identity": {},
                                            "request": request, "settings": {}, "history": []}))
