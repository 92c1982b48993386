"""The environment `make setup` builds: full mmcv with compiled ops, and a fast second run."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.mmseg
def test_mmseg_and_mmcv_ops_import():
    import mmcv
    import mmcv.ops
    import mmseg

    assert mmcv.__version__ == "2.1.0" and mmseg.__version__ == "1.2.2"
    assert hasattr(mmcv.ops, "nms") and callable(mmcv.ops.nms)


def _setup(venv: Path, **env) -> subprocess.CompletedProcess:
    """tools/setup_env.sh on `venv` (VENV=...): never the environment these tests run in."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("HA_")} | {"VENV": str(venv), **env}
    return subprocess.run(["bash", str(ROOT / "tools/setup_env.sh")], capture_output=True, text=True, timeout=60, env=e)


def _stub_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv folder whose python records its arguments and fails: any install step shows in the record."""
    venv, calls = tmp_path / "venv", tmp_path / "calls.txt"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    (venv / "bin/python").chmod(0o755)
    return venv, calls


def _inputs_hash(venv: Path, **env) -> str:
    e = {k: v for k, v in os.environ.items() if not k.startswith("HA_")} | {"VENV": str(venv), **env}
    r = subprocess.run(["bash", str(ROOT / "tools/setup_env.sh"), "--inputs-hash"], capture_output=True, text=True, env=e)
    assert r.returncode == 0 and len(r.stdout.strip()) == 16, r.stderr
    return r.stdout.strip()


def test_a_second_setup_only_checks_the_stamp(tmp_path):
    """A venv whose stamp holds the current inputs' hash: setup says so and installs nothing (its python is never
    run); a stamp of other inputs starts the install (here: the stub python, whose failure names the step)."""
    venv, calls = _stub_venv(tmp_path)
    (venv / ".setup-stamp").write_text(_inputs_hash(venv) + "\n")
    r = _setup(venv)
    assert r.returncode == 0 and "up to date" in r.stdout and "nothing to install" in r.stdout, r.stdout + r.stderr
    assert not calls.exists() and "1/6" not in r.stdout
    (venv / ".setup-stamp").write_text("0123456789abcdef\n")
    r = _setup(venv)
    assert r.returncode == 1 and "1/6" in r.stdout and "FAILED at step: build tools" in r.stderr, r.stdout + r.stderr
    assert "pip" in calls.read_text()


def test_the_stamp_changes_with_each_setup_input(tmp_path):
    """The hash a stamp holds follows the wheelhouse, the detectron2 opt-out and the wheelhouse's files."""
    venv = tmp_path / "venv"
    wh = tmp_path / "wheels"
    wh.mkdir()
    base = _inputs_hash(venv)
    assert _inputs_hash(venv) == base
    with_wh = _inputs_hash(venv, HA_WHEELHOUSE=str(wh))
    (wh / "mmcv-2.1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"x")
    assert len({base, with_wh, _inputs_hash(venv, HA_WHEELHOUSE=str(wh)), _inputs_hash(venv, HA_SKIP_DETECTRON2="1")}) == 4
