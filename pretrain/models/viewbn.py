"""Per-view batch statistics for batched views, so batching never changes the maths.

The authors run each view through the network alone, so every BatchNorm layer normalises a view
with that view's own batch statistics. When several views are concatenated into one batch (for
speed), `per_view_stats(view_ids)` tells the BatchNorm layers that their input is `len(view_ids)`
equal chunks, one per view: in train mode each chunk is normalised with its own statistics
(synchronised across processes for SyncBN, as a single view would be), and the running statistics
are updated chunk by chunk in increasing view id, i.e. in the order the one-view-at-a-time run
updates them. Outside the context, and in eval mode, the layers are plain BatchNorm.

With several processes (SyncBN), the per-view sums of every chunk are exchanged in one all-reduce per
BatchNorm call (and one in backward), not one per chunk: `pretrain.distributed.syncbn.sync_batch_norm`.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

from pretrain.distributed.collectives import world_size
from pretrain.distributed.syncbn import CPUSyncBatchNorm, sync_batch_norm

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
            return sync_batch_norm(self, x, ids)
        chunks = x.chunk(len(ids))
        out: list[torch.Tensor | None] = [None] * len(ids)
        for j in sorted(range(len(ids)), key=ids.__getitem__):
            out[j] = super().forward(chunks[j])
        return torch.cat(out)


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
