"""Code that only runs on GPUs or under a cluster launcher, exercised on this CPU machine by emulating the
condition: torch.cuda's visibility, device count and dtype support patched, SLURM variables set, the
process-group call recorded instead of made."""
import pytest
import torch
import torch.distributed as dist

from pretrain.config.config import load_config
from pretrain.distributed import launch as pdist
from pretrain.engine import checkpoint, runtime

from .conftest import ROOT

CFG = ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml"


@pytest.fixture
def gpus(monkeypatch):
    """`gpus(n)`: torch sees n GPUs (without touching a real one)."""
    def visible(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return visible


@pytest.fixture
def slurm_task(monkeypatch):
    """`slurm_task(local_id)`: the environment srun gives task `local_id` of 4 on one node."""
    def env(local_id: int):
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):  # init_distributed sets them: undone after the test
            monkeypatch.setenv(k, "")
            monkeypatch.delenv(k)
        for k, v in {"SLURM_PROCID": str(local_id), "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": str(local_id),
                     "SLURM_JOB_ID": "77", "MASTER_ADDR": "127.0.0.1"}.items():
            monkeypatch.setenv(k, v)
    return env


@pytest.mark.parametrize("visible,want", [(1, 0), (4, 3), (2, 1)])
def test_1_a_slurm_task_uses_a_gpu_it_can_see(gpus, slurm_task, monkeypatch, visible, want):
    """srun --ntasks-per-node=4 --gpus-per-task=1: each task sees one GPU, its SLURM_LOCALID is 0..3."""
    gpus(visible)
    slurm_task(3)
    calls = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.update(device=d))
    info = pdist.init_distributed("cuda")
    assert info.local_rank == 3 and calls["backend"] == "nccl" and calls["device"] == torch.device("cuda", want)
    assert runtime.resolve_device(load_config(CFG, ["train.device=cuda"]), info) == torch.device("cuda", want)


def test_4_the_backend_follows_the_training_device_not_the_visible_gpus(gpus, slurm_task, monkeypatch):
    gpus(8)
    slurm_task(1)
    calls = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.update(backend=backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.update(device=d))
    cfg = load_config(CFG, ["train.device=cpu"])
    pdist.init_distributed(runtime.device_type(cfg))
    assert calls == {"backend": "gloo"}  # no GPU claimed either


def test_3_a_bf16_checkpoint_resumes_under_fp16_and_an_fp16_one_under_bf16():
    """GradScaler state: empty when the run had no loss scaling (bf16/fp32). Loading it into an enabled scaler
    raised; a scale loaded into a disabled one is meaningless. Only what applies is restored."""
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    with pytest.raises(RuntimeError):  # what resuming did before: load whatever the checkpoint holds
        enabled.load_state_dict({})
    checkpoint.load_scaler(enabled, {})  # a bf16 run's checkpoint resumed where fp16 is chosen
    assert enabled.get_scale() == 1024.0
    fp16_state = torch.amp.GradScaler("cpu", enabled=True, init_scale=64.0).state_dict()
    checkpoint.load_scaler(enabled, fp16_state)
    assert enabled.get_scale() == 64.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    checkpoint.load_scaler(disabled, fp16_state)  # an fp16 run resumed where bf16 is chosen: nothing to restore
    assert not disabled.is_enabled()


def test_3_cuda_rng_state_is_this_process_gpus_and_resumes_with_fewer_visible_gpus(gpus, monkeypatch):
    states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(8)}
    restored = {}
    gpus(8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [states[i] for i in range(8)])
    saved = checkpoint.rng_state(torch.device("cuda", 5))
    assert len(saved["cuda"]) == 1 and torch.equal(saved["cuda"][0], states[5])  # its own GPU only
    gpus(1)  # the resume sees one GPU (one task per GPU under SLURM)

    def set_all(ss):  # torch: one state per visible device, else an invalid device ordinal
        if len(ss) != torch.cuda.device_count():
            raise RuntimeError("CUDA error: invalid device ordinal")
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.update(state=s, device=device))
    checkpoint.set_rng_state(saved, torch.device("cuda", 0))
    assert torch.equal(restored["state"], states[5]) and restored["device"] == torch.device("cuda", 0)
    old_format = dict(saved, cuda=[states[i] for i in range(8)])  # written before: every visible GPU's state
    checkpoint.set_rng_state(old_format, torch.device("cuda", 0))
    assert torch.equal(restored["state"], states[0])
    checkpoint.set_rng_state(saved, torch.device("cpu"))  # a CPU resume ignores CUDA states


@pytest.mark.parametrize("native,want", [(True, torch.bfloat16), (False, torch.float16)])
def test_11_bf16_only_where_the_gpu_computes_it_natively(gpus, monkeypatch, native, want):
    """V100/T4 report bf16 'supported' through emulation; only native support gets bf16."""
    gpus(1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    assert runtime.amp_dtype(load_config(CFG, ["train.amp=true"]), torch.device("cuda", 0)) == want
    assert runtime.amp_dtype(load_config(CFG, ["train.amp=false"]), torch.device("cuda", 0)) is None


@pytest.mark.detectron2
@pytest.mark.parametrize("machine_rank,rc", [(1, 0), (0, 1)])
def test_5_only_machine_0_checks_for_the_result_of_a_multi_machine_detection_run(demo_world, tmp_path, monkeypatch,
                                                                                 machine_rank, rc):
    """Two machines: detectron2's `launch` returns on each when its processes end; global rank 0 (machine 0)
    writes metrics.json. Machine 1 must not report a missing result (here `launch` runs no process at all:
    machine 0 then reports the missing file, machine 1 exits 0)."""
    import detectron2.engine

    from transfer.detectron2.train_net import main

    monkeypatch.setattr(detectron2.engine, "launch", lambda *a, **kw: None)
    args = ["--weights", "random", "--config", "demo_voc_R_18_FPN", "--data-root", str(demo_world), "--output",
            str(tmp_path / "run"), "--num-machines", "2", "--machine-rank", str(machine_rank), "--dist-url", "tcp://127.0.0.1:1"]
    assert main("voc_det", args) == rc
    assert (tmp_path / "run/run.json").is_file() == (machine_rank == 0)  # the run folder is claimed by machine 0


def test_6_single_node_torchrun_picks_a_free_port_in_suites_and_pretrain_sh(tmp_path):
    """Two jobs on one node collided on torchrun's default port 29500: one-node launches get --standalone
    (a free port); launchers with their own rendezvous are left as they are."""
    import os
    import subprocess

    from benchmarks.cells import launcher

    assert launcher("torchrun --nproc_per_node 8")[:2] == ["torchrun", "--standalone"]
    assert launcher("python -m torch.distributed.run --nproc_per_node 2")[3] == "--standalone"
    for own in ("torchrun --nnodes 2 --rdzv-endpoint host:29400 --nproc_per_node 8", "torchrun --master_port=1234 --nproc_per_node 8"):
        assert "--standalone" not in launcher(own)
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "NNODES")}
    out = subprocess.run(["bash", str(ROOT / "tools/pretrain.sh"), "c.yaml", "4", "optim.lr=1"], env={**env, "PYTHON": str(fake)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"] and out[-2:] == ["c.yaml", "optim.lr=1"]
    out = subprocess.run(["bash", str(ROOT / "tools/pretrain.sh"), "c.yaml", "4"], capture_output=True, text=True, check=True,
                         env={**env, "PYTHON": str(fake), "NNODES": "2", "MASTER_ADDR": "n0"}).stdout
    assert "--master_port 29500" in out and "--standalone" not in out


@pytest.mark.mmseg
@pytest.mark.parametrize("visible,want", [(1, "0"), (4, "3")])
def test_6_mmseg_under_srun_gets_torchrun_variables_with_a_gpu_the_task_can_see(gpus, slurm_task, monkeypatch, visible, want):
    """mmengine's own slurm launcher sets the device to SLURM_LOCALID (3: invalid where the task sees one GPU) and
    asks scontrol for the master: the segmentation runner hands mmengine torchrun's variables instead, from the
    expanded node list without scontrol."""
    from transfer.segmentation.run import _launcher, _rank, _world_size

    gpus(visible)
    slurm_task(3)
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol
    assert _launcher("slurm") == "pytorch"
    import os

    assert (os.environ["LOCAL_RANK"], os.environ["MASTER_ADDR"], _rank("pytorch"), _world_size("pytorch")) == (want, "gpu07", 3, 4)


@pytest.mark.parametrize("cores,warned", [({0}, True), (set(range(8)), False)])
def test_6_more_loader_workers_than_the_task_s_cores_is_said(monkeypatch, caplog, cores, warned):
    """srun --gpus-per-task=1 --cpus-per-task=1 with data.workers=4: the four workers would share one core."""
    import logging
    import os

    from pretrain.data.loader import build_loader

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    with caplog.at_level(logging.WARNING, logger="pretrain"):
        build_loader(list(range(8)), None, 2, 4, torch.device("cpu"), 0)
    said = [r.getMessage() for r in caplog.records if "data.workers=4" in r.getMessage()]
    assert bool(said) == warned
    if warned:
        assert "may use 1 CPU core(s)" in said[0] and "--cpus-per-task=5" in said[0] and "data.workers=0" in said[0]
