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
