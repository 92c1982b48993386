"""Per-view batch statistics for batched views, so batching never changes the maths.

The authors run each view through the network alone, so every BatchNorm layer normalises a view
with that view's own batch statistics. When several views are concatenated into one batch (for
speed), `per_view_stats(view_ids)` tells the BatchNorm layers that their input is `len(view_ids)`
equal chunks, one per view: in train mode each chunk is normalised with its own statistics
(synchronised across processes for SyncBN, as a single view would be), and the running statistics
are updated chunk by chunk in increasing view id, i.e. in the order the one-view-at-a-time run
updates them. Outside the context, and in eval mode, the layers are plain BatchNorm.

With several processes (SyncBN), the per-view sums of every chunk are exchanged in one all-reduce per
BatchNorm call (and one in backward), not one per chunk: `_sync_chunks`.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed.nn.functional as dnnf
from torch import nn

from .dist import CPUSyncBatchNorm, world_size

_VIEW_IDS: ContextVar[tuple[int, ...] | None] = ContextVar("view_ids", default=None)


@contextmanager
def per_view_stats(view_ids):
    """Inside: BatchNorm inputs are the concatenation of one equal chunk per id in `view_ids`."""
    token = _VIEW_IDS.set(tuple(view_ids))
    try:
        yield
    finally:
        _VIEW_IDS.reset(token)


class _PerView:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = _VIEW_IDS.get()
        if ids is None or len(ids) == 1 or not self.training:
            return super().forward(x)
        if x.shape[0] % len(ids):
            raise ValueError(f"batch of {x.shape[0]} cannot be split into {len(ids)} equal views")
        if isinstance(self, (nn.SyncBatchNorm, CPUSyncBatchNorm)) and world_size() > 1:
            return _sync_chunks(self, x, ids)
        chunks = x.chunk(len(ids))
        out: list[torch.Tensor | None] = [None] * len(ids)
        for j in sorted(range(len(ids)), key=ids.__getitem__):
            out[j] = super().forward(chunks[j])
        return torch.cat(out)


def _sync_chunks(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """Synchronised per-view BatchNorm of x (V·B, C, ...) = V chunks, in one gradient-carrying all-reduce of
    the chunks' (sum, sum of squares, count) (V, 2C + 1), computed in fp32. Same statistics as V separate
    SyncBN calls: chunk j is normalised with view ids[j]'s mean and biased variance over all processes;
    the running statistics take each chunk's (unbiased) variance in increasing view id."""
    v, c = len(ids), x.shape[1]
    xf = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(v, x.shape[0] // v, c, -1)  # (V, B, C, L)
    count = xf.shape[1] * xf.shape[3]
    stats = torch.cat([xf.sum((1, 3)), xf.square().sum((1, 3)), xf.new_full((v, 1), float(count))], 1)
    stats = dnnf.all_reduce(stats)
    n = stats[:, 2 * c:]  # (V, 1)
    mean = stats[:, :c] / n
    var = (stats[:, c:2 * c] / n - mean.square()).clamp_min(0)
    if bn.track_running_stats:
        with torch.no_grad():
            for j in sorted(range(v), key=ids.__getitem__):
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(mean[j].to(bn.running_mean.dtype), alpha=m)
                bn.running_var.mul_(1 - m).add_((var[j] * n[j] / (n[j] - 1)).to(bn.running_var.dtype), alpha=m)
    y = (xf - mean[:, None, :, None]) * torch.rsqrt(var + bn.eps)[:, None, :, None]
    if bn.affine:
        y = y * bn.weight.view(1, 1, c, 1) + bn.bias.view(1, 1, c, 1)
    return y.reshape(x.shape).to(x.dtype)


class PerViewBatchNorm1d(_PerView, nn.BatchNorm1d):
    pass


class PerViewBatchNorm2d(_PerView, nn.BatchNorm2d):
    pass


class PerViewSyncBatchNorm(_PerView, nn.SyncBatchNorm):
    pass


class PerViewCPUSyncBatchNorm(_PerView, CPUSyncBatchNorm):
    pass


_PER_VIEW = {nn.BatchNorm1d: PerViewBatchNorm1d, nn.BatchNorm2d: PerViewBatchNorm2d,
             nn.SyncBatchNorm: PerViewSyncBatchNorm, CPUSyncBatchNorm: PerViewCPUSyncBatchNorm}


def make_per_view(module: nn.Module) -> nn.Module:
    """Give every BatchNorm layer of `module` per-view statistics (in place; parameters, buffers and
    state_dict keys unchanged). Call again after a SyncBN conversion."""
    for m in module.modules():
        if type(m) in _PER_VIEW:
            m.__class__ = _PER_VIEW[type(m)]
    return module
