"""DDP on 2 CPU processes (gloo, synchronised BN) gives the gradients of one process on the global batch,
also when the views are batched (per-view statistics through the synchronised BN)."""
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from pretrain.config.config import load_config
from pretrain.distributed.syncbn import convert_sync_batchnorm
from pretrain.engine.build import build_model
from pretrain.models.viewbn import make_per_view

from .test_method import SMALL, inputs


def _cfg(name):
    cfg = load_config(None, [f"method.name={name}", *SMALL, "method.batching=view"])
    if name == "barlowtwins":
        cfg["method"]["proj"].update(last_bn=False)
    return cfg


def _inputs64():
    """float64 so that the comparison is not limited by float32 reduction order."""
    views, params = inputs(4, b=8)
    return [v.double() for v in views], [p.double() for p in params]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank, world, port, name, mode, out):
    _join_gloo(rank, world, port)
    torch.manual_seed(0)
    model = make_per_view(convert_sync_batchnorm(build_model(_cfg(name)), torch.device("cpu"))).double()  # as the engine
    model.batching = mode
    ddp = DistributedDataParallel(model, broadcast_buffers=False)
    views, params = _inputs64()
    b = 8 // world
    loss, _ = ddp([v[rank * b:(rank + 1) * b] for v in views], [p[rank * b:(rank + 1) * b] for p in params])
    loss.backward()
    if rank == 0:
        torch.save(_grads(model), out)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_gloo(rank: int, world: int, port: int, timeout_s: float | None = None) -> None:
    """Join a gloo process group of `world` processes on this machine (a spawned test worker)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            **({"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}))


@pytest.mark.slow
@pytest.mark.parametrize("name,mode", [("simsiam", "view"), ("simsiam", "shared"), ("barlowtwins", "view"),
                                       ("barlowtwins", "pair")])
def test_ddp_gradients_match_single_process(tmp_path, name, mode):
    torch.manual_seed(0)
    model = build_model(_cfg(name)).double()
    loss, _ = model(*_inputs64())
    loss.backward()
    ref = _grads(model)
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(2, _free_port(), name, mode, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert set(got) == set(ref)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-7, atol=1e-9, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_split_each_global_batch_of_the_single_process_order(world):
    """Batch k of the global batch is the same set of images whichever the process count: the union of the
    ranks' k-th batches is the single process's k-th batch (so DDP trains on one process's batches)."""
    from pretrain.data.sampler import ResumableSampler

    size, per_rank = 50, 3
    single = list(ResumableSampler(size, per_rank * world, seed=5))
    ranks = [list(ResumableSampler(size, per_rank, rank=r, world_size=world, seed=5)) for r in range(world)]
    steps = size // (per_rank * world)
    assert all(len(r) == steps * per_rank for r in ranks) and len(single) == steps * per_rank * world
    for k in range(steps):
        union = sorted(i for r in ranks for i in r[k * per_rank:(k + 1) * per_rank])
        assert union == sorted(single[k * per_rank * world:(k + 1) * per_rank * world]), k


def test_slurm_variables_become_torchrun_ones(monkeypatch):
    from pretrain.distributed.launch import _slurm_env

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: the first node of the list
    for k, v in {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
                 "SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu17,gpu18"}.items():
        monkeypatch.setenv(k, v)
    assert _slurm_env() == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu17", "MASTER_PORT": str(29500 + 456)}
    monkeypatch.setenv("RANK", "0")  # torchrun's variables win
    assert _slurm_env() is None
