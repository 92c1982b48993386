"""Distributed helpers: process-group set-up (torchrun, SLURM, single process), gathers, SyncBN on CPU.

Gathers: `concat_all_gather` carries NO gradient (for keys/targets). Gradient-carrying reductions
use `torch.distributed.nn.functional` (Barlow Twins' cross-correlation, `CPUSyncBatchNorm`).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


class LaunchError(RuntimeError):
    """A process started in a way that cannot form the process group it describes; the message says how to launch."""


def slurm_port() -> str:
    """A rendezvous port per SLURM job (29500 + job id mod 1000): two jobs sharing a node do not collide."""
    return str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000)


def expand_hostlist(nodes: str) -> list[str]:
    """SLURM's compressed host list as host names, in order, as `scontrol show hostnames` gives them:
    "gpu[01-03,07],cpu5" -> gpu01 gpu02 gpu03 gpu07 cpu5; ranges keep their zero padding; several bracket
    groups in one name multiply ("r[1-2]n[01-02]" -> r1n01 r1n02 r2n01 r2n02)."""
    hosts, name, depth = [], "", 0
    for ch in nodes.strip() + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            if name:
                hosts += _expand_one(name)
            name = ""
        else:
            name += ch
    return hosts


def _expand_one(name: str) -> list[str]:
    if "[" not in name:
        return [name]
    head, rest = name.split("[", 1)
    group, tail = rest.split("]", 1)
    values = []
    for part in group.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"SLURM host list {name!r}: range {part} runs backwards")
        values += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    return [head + v + t for v in values for t in _expand_one(tail)]


def _slurm_env() -> dict[str, str] | None:
    """torchrun-style variables derived from SLURM's (one task per GPU under srun: the step's task count is the
    world size); None outside SLURM, under torchrun, or for a batch script's single task."""
    if "SLURM_PROCID" not in os.environ or "RANK" in os.environ:
        return None
    if "SLURM_STEP_NUM_TASKS" not in os.environ:  # the batch script itself, not a task that srun started
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            raise LaunchError(
                f"this job has SLURM_NTASKS={os.environ['SLURM_NTASKS']} tasks, but this process was started by the batch script, "
                "not by srun, so the other tasks never come: launch it with `srun python -m pretrain.train ...` (one task per "
                "GPU), or run `tools/pretrain.sh CONFIG NUM_GPUS` (torchrun) in the script instead")
        return None
    env = {"RANK": os.environ["SLURM_PROCID"], "WORLD_SIZE": os.environ["SLURM_STEP_NUM_TASKS"],
           "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0")}
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST", os.environ.get("SLURM_NODELIST", "127.0.0.1"))
        try:
            host = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                  check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):  # no scontrol (containers): expand the list here
            host = expand_hostlist(nodes)[0]
        env["MASTER_ADDR"] = host
    env.setdefault("MASTER_PORT", os.environ.get("MASTER_PORT", slurm_port()))
    return env


def cuda_device(local_rank: int) -> torch.device:
    """The GPU of a process with this local rank: `local_rank` modulo the visible GPUs, so that a task that sees
    one GPU (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per task) uses it whatever its SLURM_LOCALID."""
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def slurm_as_torchrun() -> bool:
    """Under srun, write SLURM's variables as torchrun's (`_slurm_env`), LOCAL_RANK being the index of a GPU this
    task sees (`cuda_device`: 0 under --gpus-per-task=1), for code and engines that read torchrun's (mmengine's
    `pytorch` launcher). False when this process is not an srun task of several."""
    env = _slurm_env()
    if env is None:
        return False
    if torch.cuda.is_available():
        env["LOCAL_RANK"] = str(cuda_device(int(env["LOCAL_RANK"])).index)
    os.environ.update(env)
    return True


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's or SLURM's environment, or run alone. The backend
    follows the training device (`device_type`): NCCL for "cuda", gloo otherwise, whatever GPUs are visible."""
    slurm = _slurm_env()
    if slurm:
        os.environ.update(slurm)
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(cuda_device(info.local_rank))
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    return info


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def all_processes(items: list) -> list:
    """Every process's `items` (picklable), concatenated in rank order; the same list on every process."""
    if world_size() == 1:
        return list(items)
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (B, ...) from every rank -> (world·B, ...). *** No gradient flows back. ***"""
    if world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


@contextlib.contextmanager
def shuffled_across_ranks(views: list[torch.Tensor], params: list[torch.Tensor]):
    """MoCo's shuffle BN: yields (views, params, unshuffle) with the samples permuted across ranks
    (one permutation for all views), and `unshuffle(list of (B, D))` restoring each rank's order."""
    if world_size() == 1:
        yield views, params, lambda outs: outs
        return
    b, rank = views[0].shape[0], dist.get_rank()
    n = b * world_size()
    perm = torch.randperm(n, device=views[0].device)
    dist.broadcast(perm, src=0)
    mine = perm.view(world_size(), b)[rank]
    inverse = torch.argsort(perm).view(world_size(), b)[rank]

    def take(ts):
        return [concat_all_gather(t)[mine] for t in ts]

    def unshuffle(outs):
        return [concat_all_gather(o)[inverse] for o in outs]

    yield take(views), take(params), unshuffle


_BN_GROUPS: dict = {}


def bn_group():
    """The process group of the BatchNorm statistics: its own (all processes), so that under NCCL their small
    collectives run on their own communicator instead of queueing behind DDP's gradient buckets. Made at the
    first synchronised BatchNorm call, which every process reaches in the same order."""
    key = id(dist.group.WORLD)
    if key not in _BN_GROUPS:
        _BN_GROUPS[key] = dist.new_group(list(range(dist.get_world_size())))
    return _BN_GROUPS[key]


def combine_moments(counts: torch.Tensor, means: torch.Tensor, m2s: torch.Tensor):
    """Chan et al.'s parallel combination of (count, mean, sum of squared deviations) over dim 0 (processes):
    counts (W, V, 1), means and m2s (W, V, C) -> total count (V, 1), mean and biased variance (V, C). Precise for
    large means, unlike E[x²] - E[x]²."""
    n = counts.sum(0)
    mean = (counts * means).sum(0) / n
    m2 = (m2s + counts * (means - mean).square()).sum(0)
    return n, mean, m2 / n


class _SyncBN(torch.autograd.Function):
    """Forward: per-chunk local (count, mean, M2) in fp32, one all_gather over processes, combined exactly
    (`combine_moments`). Saved for backward: the input as it came (its own dtype) and (V, C) statistics, about
    1x the input's bytes. Backward: one all-reduce of the chunks' (sum dy, sum dy·(x - mean)) (V, 2C)."""

    @staticmethod
    def forward(ctx, x, weight, bias, v: int, eps: float, group):
        c = x.shape[1]
        xf = x.reshape(v, x.shape[0] // v, c, -1)  # (V, B, C, L), the input's dtype
        acc = torch.promote_types(x.dtype, torch.float32)
        local_n = xf.shape[1] * xf.shape[3]
        local_mean = xf.sum((1, 3), dtype=acc) / local_n
        local_m2 = (xf.to(acc) - local_mean[:, None, :, None]).square().sum((1, 3))
        mine = torch.cat([local_mean, local_m2, local_mean.new_full((v, 1), float(local_n))], 1)
        parts = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, mine, group=group)
        st = torch.stack(parts)  # (W, V, 2C + 1)
        n, mean, var = combine_moments(st[..., 2 * c:], st[..., :c], st[..., c:2 * c])
        invstd = torch.rsqrt(var + eps)
        y = (xf.to(acc) - mean[:, None, :, None]) * invstd[:, None, :, None]
        if weight is not None:
            y = y * weight.view(1, 1, c, 1) + bias.view(1, 1, c, 1)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.v, ctx.group, ctx.n = v, group, n
        ctx.mark_non_differentiable(mean, var, n)
        out = torch.empty_like(x)  # not a view of y: autograd lets the next layer (ReLU) work in place
        out.view(y.shape).copy_(y)
        return out, mean, var, n

    @staticmethod
    def backward(ctx, dy, _mean, _var, _n):
        x, weight, mean, invstd = ctx.saved_tensors
        v, c = ctx.v, x.shape[1]
        acc = mean.dtype
        xmu = x.reshape(v, x.shape[0] // v, c, -1).to(acc) - mean[:, None, :, None]  # (V, B, C, L)
        g = dy.reshape(xmu.shape).to(acc)
        sums = torch.cat([g.sum((1, 3)), (g * xmu).sum((1, 3))], 1)  # (V, 2C), this process
        grad_w = grad_b = None
        if weight is not None:
            grad_w = (sums[:, c:] * invstd).sum(0).to(weight.dtype)
            grad_b = sums[:, :c].sum(0).to(weight.dtype)
        dist.all_reduce(sums, group=ctx.group)
        n = ctx.n  # (V, 1)
        mean_dy, mean_dy_xmu = (sums[:, :c] / n)[:, None, :, None], (sums[:, c:] / n)[:, None, :, None]
        scale = invstd[:, None, :, None] * (weight.view(1, 1, c, 1) if weight is not None else 1)
        dx = (g - mean_dy - xmu * invstd[:, None, :, None].square() * mean_dy_xmu) * scale
        return dx.reshape(x.shape).to(x.dtype), grad_w, grad_b, None, None, None


def sync_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, ids: tuple[int, ...] = (0,)) -> torch.Tensor:
    """BatchNorm of `bn` on x (V·B, C, ...) = V equal chunks (one per view id in `ids`; one chunk by default)
    with statistics over all processes (`_SyncBN`: one collective forward, one backward, on `bn_group()`).
    Chunk j is normalised with its mean and biased variance over all processes (as V separate SyncBN calls
    would); the running statistics take each chunk's unbiased variance in increasing view id."""
    y, mean, var, n = _SyncBN.apply(x, bn.weight if bn.affine else None, bn.bias if bn.affine else None, len(ids),
                                     bn.eps, bn_group())
    if bn.track_running_stats:
        with torch.no_grad():
            for j in sorted(range(len(ids)), key=ids.__getitem__):
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(mean[j].to(bn.running_mean.dtype), alpha=m)
                bn.running_var.mul_(1 - m).add_((var[j] * n[j] / (n[j] - 1)).to(bn.running_var.dtype), alpha=m)
    return y


class CPUSyncBatchNorm(nn.BatchNorm1d):
    """BatchNorm whose training statistics span all ranks, for CPU (gloo) runs where
    torch.nn.SyncBatchNorm refuses CPU tensors. Works on (B, C) and (B, C, H, W) inputs;
    gradients flow through the all_reduce."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        return sync_batch_norm(self, x)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """All BatchNorm layers -> synchronised ones (torch's SyncBatchNorm on GPU, CPUSyncBatchNorm on CPU)."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module
