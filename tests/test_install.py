"""Installed like a library (issue 35): a wheel built from a clean copy of the tracked files, installed into its own
folder, used from another folder: every preset found by name, the console scripts run, and a kNN on a demo world."""
import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(target folder with the installed packages and bin/, environment that imports them first)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    clean = tmp / "clean"
    for name in filter(None, tracked):
        src = ROOT / name.decode()
        if src.is_file():
            dst = clean / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(clean)], check=True)
    (wheel,) = (tmp / "dist").glob("hier_aug-*.whl")
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy before the checkout's editable one
    return target, env


def _run(cmd, env, cwd):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_the_installed_package_finds_its_presets_from_any_folder(installed, tmp_path):
    target, env = installed
    probe = ("import pretrain, json; from pretrain.config.shipped import configs_dir; "
             "from transfer.segmentation.protocol import resolve_config as seg; "
             "from transfer.detectron2.protocol import resolve_config as det; "
             "print(json.dumps([pretrain.__file__, str(configs_dir()), str(seg('demo_fcn_r18-d8_voc-192')), "
             "str(det('demo_voc_R_18_FPN'))]))")
    r = _run([sys.executable, "-c", probe], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    where, configs, seg, det = json.loads(r.stdout)
    assert where.startswith(str(target)) and configs == str(target / "hier_aug_configs")
    assert seg == str(target / "hier_aug_configs/transfer/mmseg/demo_fcn_r18-d8_voc-192.py") and os.path.isfile(seg)
    assert det == str(target / "hier_aug_configs/transfer/detectron2/demo_voc_R_18_FPN.yaml") and os.path.isfile(det)
    r = _run([str(target / "bin/hier-aug-recipes")], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    presets = sorted(p.stem for p in (ROOT / "configs/pretrain").glob("*.yaml"))
    assert all(name in r.stdout for name in presets), r.stdout[-2000:]
    r = _run([str(target / "bin/hier-aug-pretrain"), "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml",
              "--print-config"], env, tmp_path)  # the README's preset path, from a folder that has no configs/
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "simsiam-hier_resnet18_1xb64-coslr-4e_demo", r.stderr[-1000:]
    r = _run([str(target / "bin/hier-aug-bench"), "no_such_suite"], env, tmp_path)
    assert r.returncode == 2 and "shipped suites, by name: ablation_demo" in r.stderr


@pytest.mark.slow
def test_the_installed_transfer_command_runs_knn_on_a_demo_world(installed, demo_world, tmp_path):
    target, env = installed
    r = _run([str(target / "bin/hier-aug-transfer"), "--task", "knn", "--weights", "random", "--arch", "resnet18",
              "--data", str(demo_world / "imagefolder"), "--dataset", "demo", "--size", "32", "--workers", "0", "--k", "5",
              "--output", str(tmp_path / "knn")], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "knn/metrics.json").read_text())
    assert 0 <= m["metrics"]["top1"] <= 100 and m["task"] == "knn"
    for script in ("hier-aug-pretrain", "hier-aug-convert-d2", "hier-aug-extract", "hier-aug-check-data", "hier-aug-demo-data"):
        h = _run([str(target / "bin" / script), "--help"], env, tmp_path)
        assert h.returncode == 0 and "usage" in h.stdout.lower(), (script, h.stderr[-1000:])
