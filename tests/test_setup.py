"""The setup's detectron2 decision (tools/setup_detectron2.sh) and stamp, without a network:
installed at the pinned commit -> kept; a wheelhouse wheel -> used; opted out -> skipped;
none of these and no GitHub -> a clear failure naming the three ways."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"  # README's pin, written out


def fake_venv(tmp_path: Path, python: str, isolated: bool) -> Path:
    """A folder with bin/python running `python` (with -S: no site-packages, so no detectron2)."""
    (tmp_path / "venv/bin").mkdir(parents=True)
    exe = tmp_path / "venv/bin/python"
    exe.write_text(f'#!/bin/sh\nexec "{python}" {"-S" if isolated else ""} "$@"\n')
    exe.chmod(0o755)
    return tmp_path / "venv"


def run_d2(venv: Path, dry: bool = True, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("HA_")}
    e.update(HA_DETECTRON2_GIT="file:///nonexistent/detectron2.git", **env)
    if dry:
        e["HA_SETUP_DRY_RUN"] = "1"
    return subprocess.run(["bash", "tools/setup_detectron2.sh", str(venv)], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=120)


def test_pin_is_the_readme_commit():
    assert f"# detectron2-commit: {COMMIT}" in (ROOT / "requirements/constraints.txt").read_text()
    assert COMMIT in (ROOT / "README.md").read_text()


def test_wheelhouse_wheel_is_chosen(tmp_path):
    venv = fake_venv(tmp_path, sys.executable, isolated=True)
    wh = tmp_path / "wheels"
    wh.mkdir()
    (wh / "detectron2-0.6-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    r = run_d2(venv, HA_WHEELHOUSE=str(wh))
    assert r.returncode == 0 and f"decision: wheelhouse {wh}/detectron2-0.6-cp311-cp311-linux_x86_64.whl" in r.stdout


def test_opt_out_skips(tmp_path):
    r = run_d2(fake_venv(tmp_path, sys.executable, isolated=True), HA_SKIP_DETECTRON2="1")
    assert r.returncode == 0 and "decision: skip" in r.stdout


def test_no_way_fails_naming_the_three(tmp_path):
    wh = tmp_path / "empty"
    wh.mkdir()
    r = run_d2(fake_venv(tmp_path, sys.executable, isolated=True), dry=False, HA_WHEELHOUSE=str(wh))
    assert r.returncode == 1
    for hint in (f"git+https://github.com/facebookresearch/detectron2.git@{COMMIT}", "HA_WHEELHOUSE=",
                 "network access to GitHub", "HA_SKIP_DETECTRON2=1"):
        assert hint in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is None, reason="needs detectron2 installed (make setup)")
def test_installed_at_the_pin_is_kept(tmp_path):
    venv = fake_venv(tmp_path, sys.executable, isolated=False)
    (venv / ".detectron2-commit").write_text(f"{COMMIT} wheelhouse x.whl\n")
    assert "decision: installed" in run_d2(venv).stdout
    (venv / ".detectron2-commit").write_text("0000000 wheelhouse old.whl\n")  # another commit: not kept
    assert "decision: installed" not in run_d2(venv, HA_SKIP_DETECTRON2="1").stdout


def test_stamp_notices_a_new_wheel_and_the_opt_out(tmp_path):
    wh = tmp_path / "wheels"
    wh.mkdir()

    def stamp(**env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("HA_")}
        e.update(HA_WHEELHOUSE=str(wh), VENV=str(tmp_path / "venv"), **env)
        return subprocess.run(["bash", "tools/setup_env.sh", "--inputs-hash"], cwd=ROOT, env=e, capture_output=True,
                              text=True, check=True).stdout.strip()

    before = stamp()
    assert stamp() == before and stamp(HA_SKIP_DETECTRON2="1") != before
    (wh / "detectron2-0.6-cp311-cp311-linux_x86_64.whl").write_bytes(b"x")
    assert stamp() != before
