"""Where users run, round 2 (issue 34), emulated on this CPU: SLURM host lists without scontrol, a batch
script's process that srun did not start, the folder lock, the GPU check's draws, SLURM jobs through submitit."""
import os

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
    from pretrain.distributed.launch import expand_hostlist

    assert expand_hostlist(nodes) == hosts


def _slurm(monkeypatch, **env):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol, as in most containers
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_without_scontrol_the_master_is_the_first_host_of_the_expanded_list(monkeypatch):
    from pretrain.distributed.launch import _slurm_env

    _slurm(monkeypatch, SLURM_PROCID="1", SLURM_NTASKS="4", SLURM_STEP_NUM_TASKS="4", SLURM_LOCALID="1", SLURM_JOB_ID="9",
           SLURM_JOB_NODELIST="gpu[01,03]")
    assert _slurm_env()["MASTER_ADDR"] == "gpu01"


def test_a_batch_script_process_that_srun_did_not_start_says_what_to_do(monkeypatch):
    """sbatch --ntasks 8 runs the script once with SLURM_PROCID=0, SLURM_NTASKS=8 and no step: it would wait for
    7 processes that never come."""
    from pretrain.distributed.launch import _slurm_env

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

    from pretrain.runs.folder import LOCK_FILE, STALE_S, RunConflict, RunFolder, release_folder

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
    assert STALE_S == 600  # the README's 10 minutes
    os.utime(lock, (lock.stat().st_atime - 605, lock.stat().st_mtime - 605))
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


# ---- 4: SLURM through submitit ---------------------------------------------------------------------------------------

FAKE_SBATCH = """#!/bin/bash
# a stand-in for SLURM's sbatch: keeps the script, notes whether its --output folder exists, answers as sbatch does
n=$(( $(cat "$REC/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$REC/count"
script="${@: -1}"; cp "$script" "$REC/$n.sh"
out=$(grep -m1 -- '--output=' "$script" | sed 's/.*--output=//')
[ -d "$(dirname "$out")" ] && echo yes > "$REC/$n.dir" || echo no > "$REC/$n.dir"
echo "Submitted batch job $n"
"""


@pytest.fixture
def stand_in_slurm(tmp_path, monkeypatch):
    """A stand-in sbatch on PATH recording each script in rec/, and a suite s.yaml of a checkpoint row and a config
    row with one kNN column -> (suite file, rec folder)."""
    import yaml

    rec, bin_dir = tmp_path / "rec", tmp_path / "bin"
    rec.mkdir(), bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it before it submits
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("REC", str(rec))
    cfg = "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"
    doc = {"name": "s", "output": str(tmp_path / "bench"), "seeds": [0], "references": False,
           "checkpoints": [{"name": "file", "path": "random"}, {"name": "hier", "config": cfg}],
           "tasks": {"knn": ["--data", str(tmp_path)]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "s.yaml", rec


def test_slurm_jobs_are_submitted_through_submitit_with_their_logs_and_dependencies(tmp_path, stand_in_slurm, capsys):
    """A stand-in sbatch: one job per pretraining and cell, submitit's script (USR2 warning before the time limit,
    the parameters given), its --output in the job's own folder (existing at submission: the old script writer's did
    not), the config row's cells after their pretraining job, the checkpoint row's cells after nothing."""
    from benchmarks.run import main

    suite, rec = stand_in_slurm
    assert main([str(suite), "--scheduler", "slurm", "--slurm", "slurm_partition=dev", "gpus_per_node=8",
                 "timeout_min=600"]) == 0
    out = capsys.readouterr().out
    scripts = {n: (rec / f"{n}.sh").read_text() for n in (1, 2, 3)}
    assert (rec / "count").read_text().strip() == "3" and all((rec / f"{n}.dir").read_text().strip() == "yes" for n in scripts)
    cell_file, pre, cell_hier = (scripts[n] for n in (1, 2, 3))  # row order: the file row's cell, then the config row
    bench = tmp_path / "bench"
    assert f"#SBATCH --output={bench / 'cells/file/knn/s0/submitit'}/%j_0_log.out" in cell_file
    assert f"#SBATCH --output={bench / 'pretrain/hier/submitit'}/%j_0_log.out" in pre
    for s in scripts.values():
        assert "#SBATCH --partition=dev" in s and "#SBATCH --gpus-per-node=8" in s and "#SBATCH --time=600" in s
        assert "#SBATCH --signal=USR2@90" in s and "submitit.core._submit" in s
    assert "#SBATCH --dependency=afterok:2" in cell_hier and "--dependency" not in cell_file + pre
    assert "hier / knn / seed 0: job 3 (after 2)" in out and "3 jobs submitted" in out


def test_a_job_s_time_limit_defaults_to_24_hours_not_submitit_s_5_minutes(stand_in_slurm):
    """Without `timeout_min` every job gets the README's 1440 minutes (submitit's own default, 5, would stop each
    pretraining within minutes and requeue it forever)."""
    from benchmarks.run import main

    suite, rec = stand_in_slurm
    assert main([str(suite), "--scheduler", "slurm"]) == 0
    scripts = [(rec / f"{n}.sh").read_text() for n in (1, 2, 3)]
    assert all("#SBATCH --time=1440\n" in s for s in scripts), scripts[0]


@pytest.mark.parametrize("env,want", [(None, "SIGUSR2"), ("USR1", "SIGUSR1")])
def test_a_preempted_job_calls_submitit_s_requeue_handler(monkeypatch, env, want):
    """A cell that stopped for preemption calls the handler submitit installed for its signal (USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise), which requeues the job; the other signal's handler is left alone."""
    import signal
    import types

    from benchmarks import submit

    ckpt = types.SimpleNamespace(name="row")
    monkeypatch.setattr(submit, "load_suite", lambda path: types.SimpleNamespace(checkpoints=[ckpt]))
    monkeypatch.setattr(submit, "run_pretrain_cell", lambda suite, c, seed: "preempted")
    if env is None:
        monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    else:
        monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", env)
    called = []
    old = {s: signal.signal(s, lambda signum, frame: called.append(signal.Signals(signum).name))
           for s in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        assert submit.SuiteJob("s.yaml", "row", None, None)() == "preempted"
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert called == [want]


def test_slurm_without_sbatch_says_what_to_do(tmp_path, monkeypatch, capsys):
    import yaml

    from benchmarks.run import main

    monkeypatch.setenv("PATH", str(tmp_path))
    doc = {"name": "s", "output": str(tmp_path / "bench"), "checkpoints": [{"name": "file", "path": "random"}],
           "tasks": {"knn": ["--data", str(tmp_path)]}, "references": False}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert main([str(tmp_path / "s.yaml"), "--scheduler", "slurm"]) == 1
    assert "needs SLURM's sbatch" in capsys.readouterr().err


def _signal_job(folder, signum) -> int:
    """Send `signum` to every process of a job, as SLURM does on preemption: each process whose command line names
    `folder` (submitit's task process, the run it started, the local controller). Returns how many."""
    import signal as _signal  # noqa: F401

    hit = 0
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd and pid != os.getpid():
            os.kill(pid, signum)
            hit += 1
    return hit


@pytest.mark.slow
def test_submitit_local_runs_a_suite_and_a_preempted_pretraining_is_requeued_and_resumes(demo_world, tmp_path):
    """The SLURM path's jobs through submitit's local executor: a config row's pretraining and its kNN cell. SIGTERM
    to every process of the pretraining job mid-run: the run checkpoints at its next logging step and exits 75,
    the job asks submitit to requeue, the requeued job resumes from that step; every step is logged once, the cell
    runs after the pretraining, the report is written."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from .conftest import ROOT
    from .test_pretrain_run import TINY, _small_folder

    data = _small_folder(demo_world, tmp_path / "data", 12)  # 24 images, batch 4: 6 steps an epoch, 36 in all
    doc = {"name": "s", "output": str(tmp_path / "bench"), "seeds": [0], "references": False,
           "pretrain": {"overrides": [*TINY, "optim.batch_size=4", "optim.epochs=6", "data.workers=0", f"data.train={data}",
                                      "train.log_every=2", "train.ckpt_every_minutes=0"]},
           "checkpoints": [{"name": "hier", "config": "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"}],
           "tasks": {"knn": ["--data", str(demo_world / "imagefolder"), "--dataset", "demo", "--size", "32", "--workers", "0",
                             "--k", "5"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    pdir = tmp_path / "bench/pretrain/hier"
    log = tmp_path / "runner.log"
    with open(log, "w") as out:
        runner = subprocess.Popen([sys.executable, "-m", "benchmarks.run", str(tmp_path / "s.yaml"), "--scheduler",
                                   "submitit-local", "--slurm", "timeout_min=20"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        t0 = time.time()
        while not ((pdir / "log.jsonl").is_file() and (pdir / "log.jsonl").read_text().count('"loss"') >= 2):
            assert runner.poll() is None and time.time() - t0 < 300, log.read_text()[-3000:]
            time.sleep(0.2)
        assert _signal_job(pdir, signal.SIGTERM) >= 2
        rc = runner.wait(timeout=900)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    events = [json.loads(line) for line in (pdir / "log.jsonl").read_text().splitlines()]
    stopped = [e for e in events if e.get("event") == "preempted"]
    assert len(stopped) == 1 and stopped[0]["signal"] == signal.SIGTERM, events
    steps = [e["step"] for e in events if "loss" in e]
    assert steps == list(range(2, 37, 2))  # each logging step once: the requeued job went on from the checkpoint
    summary = json.loads((pdir / "pretrain_summary.json").read_text())
    assert summary["steps"] == 36 and summary["steps_this_run"] == 36 - stopped[0]["step"]
    submitit_logs = "".join(p.read_text() for p in (pdir / "submitit").glob("*_log.*"))
    assert "Requeued job" in submitit_logs, submitit_logs[-2000:]
    cell = tmp_path / "bench/cells/hier/knn/s0"
    assert json.loads((cell / "metrics.json").read_text())["weights"] == str(pdir / "last.pth")
    assert "hier / knn / seed 0: done" in text and "cells:" not in text and (tmp_path / "bench/report.md").is_file()
