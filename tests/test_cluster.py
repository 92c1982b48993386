"""Where users run, round 2 (issue 34), emulated on this CPU: SLURM host lists without scontrol, a batch
script's process that srun did not start."""
import pytest


@pytest.mark.parametrize("nodes,hosts", [
    ("gpu[01-02]", ["gpu01", "gpu02"]),
    ("gpu[01,03]", ["gpu01", "gpu03"]),
    ("gpu[08-11],cpu5", ["gpu08", "gpu09", "gpu10", "gpu11", "cpu5"]),
    ("a[009-011]", ["a009", "a010", "a011"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("x[1-2,5]y,z", ["x1y", "x2y", "x5y", "z"]),
    ("node7", ["node7"]),
])
def test_slurm_host_lists_expand_as_scontrol_does(nodes, hosts):
    from pretrain.dist import expand_hostlist

    assert expand_hostlist(nodes) == hosts


def _slurm(monkeypatch, **env):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol, as in most containers
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_without_scontrol_the_master_is_the_first_host_of_the_expanded_list(monkeypatch):
    from pretrain.dist import _slurm_env

    _slurm(monkeypatch, SLURM_PROCID="1", SLURM_NTASKS="4", SLURM_STEP_NUM_TASKS="4", SLURM_LOCALID="1", SLURM_JOB_ID="9",
           SLURM_JOB_NODELIST="gpu[01,03]")
    assert _slurm_env()["MASTER_ADDR"] == "gpu01"


def test_a_batch_script_process_that_srun_did_not_start_says_what_to_do(monkeypatch):
    """sbatch --ntasks 8 runs the script once with SLURM_PROCID=0, SLURM_NTASKS=8 and no step: it would wait for
    7 processes that never come."""
    from pretrain.dist import _slurm_env

    _slurm(monkeypatch, SLURM_PROCID="0", SLURM_NTASKS="8", SLURM_JOB_ID="9", SLURM_JOB_NODELIST="gpu01")
    with pytest.raises(RuntimeError, match="not by srun"):
        _slurm_env()
    _slurm(monkeypatch, SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_JOB_ID="9", SLURM_JOB_NODELIST="gpu01")
    assert _slurm_env() is None  # a one-task batch job is one process
    _slurm(monkeypatch, SLURM_PROCID="2", SLURM_NTASKS="8", SLURM_STEP_NUM_TASKS="4", SLURM_LOCALID="2", SLURM_JOB_ID="9",
           SLURM_JOB_NODELIST="gpu01")
    assert _slurm_env()["WORLD_SIZE"] == "4"  # srun -n 4 inside an 8-task allocation: the step's tasks


@pytest.mark.parametrize("dry", [True, False], ids=["dry", "gpu"])
@pytest.mark.parametrize("gpus", [8, 16])
def test_the_gpu_checks_draws_fit_the_images_it_writes(tmp_path, dry, gpus):
    """The GPU setting wrote 640 images (20 batches of 32) and drew 5 + 20 from one iterator: StopIteration on the
    first device. Each section's draws must fit one epoch of the images written, for the GPU setting too."""
    from benchmarks.perf.gpu_check import setting

    s = setting(dry, gpus, tmp_path, tmp_path)
    batches = s.images_needed() // s.batch  # ResumableSampler: whole batches of one epoch
    assert batches >= s.warmup + s.steps and batches >= 2 and s.images_needed() >= 8
    if not dry:
        assert s.batch == 256 // gpus and s.warmup >= 10 and s.steps >= 30


def test_a_folder_in_use_by_a_live_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    """Two commands into one folder: the second is refused naming the holder; a lock whose process is gone
    (same host: no such pid; another host: untouched past STALE_S) is taken over."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from pretrain.run_folder import LOCK_FILE, STALE_S, RunConflict, RunFolder, release_folder

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / LOCK_FILE
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid, "since": "t", "command": "pretrain A"}))
        with pytest.raises(RunConflict, match=f"process {other.pid}.*pretrain A"):
            RunFolder(tmp_path, "pretrain").open({"a": 1}, {})
        assert not (tmp_path / "run.json").exists()
    finally:
        other.kill()
        other.wait()
    assert RunFolder(tmp_path, "pretrain").open({"a": 1}, {}) == "new"  # its process is gone: taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_folder(tmp_path)
    assert not lock.exists()
    lock.write_text(json.dumps({"host": "gpu-node-17", "pid": 1, "since": "t", "command": "x"}))
    with pytest.raises(RunConflict, match="gpu-node-17"):
        RunFolder(tmp_path, "pretrain").open({"a": 1}, {})
    os.utime(lock, (lock.stat().st_atime - STALE_S - 5, lock.stat().st_mtime - STALE_S - 5))
    assert RunFolder(tmp_path, "pretrain").open({"a": 1}, {}) in ("new", "resume")
    release_folder(tmp_path)


def test_two_identical_pretrainings_a_moment_apart_do_not_both_train(demo_world, tmp_path):
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    data = tmp_path / "data"
    for cls in sorted(p.name for p in (demo_world / "imagefolder/train").iterdir())[:2]:
        (data / cls).mkdir(parents=True)
        for img in sorted((demo_world / "imagefolder/train" / cls).iterdir())[:8]:
            (data / cls / img.name).symlink_to(img)
    cmd = [sys.executable, "-m", "pretrain.train", str(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml"),
           f"data.train={data}", f"train.output={tmp_path / 'run'}", "data.workers=0", "optim.batch_size=4", "optim.epochs=3",
           "augment.size=32", "train.log_every=1"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (tmp_path / "run/.lock").exists() and time.time() - t0 < 120:
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 1 and "is in use by another run" in second.stderr and str(first.pid) in second.stderr
    steps = [r["step"] for r in map(__import__("json").loads, (tmp_path / "run/log.jsonl").read_text().splitlines()) if "step" in r]
    assert steps == sorted(set(steps)) and not (tmp_path / "run/.lock").exists()
