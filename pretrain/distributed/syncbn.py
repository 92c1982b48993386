"""Synchronised BatchNorm: per-view chunks with statistics over all processes, and a CPU (gloo) SyncBatchNorm."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from pretrain.distributed.collectives import world_size

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
