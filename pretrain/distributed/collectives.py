"""Collectives the methods and the trainer use. `concat_all_gather` carries NO gradient (keys/targets);
gradient-carrying reductions use `torch.distributed.nn.functional` (Barlow Twins' cross-correlation)."""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


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
