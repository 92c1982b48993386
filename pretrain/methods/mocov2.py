"""MoCo v2: momentum key encoder, one queue of negatives per stage, InfoNCE (T = 0.2)."""
import torch
import torch.nn.functional as F

from pretrain.distributed.collectives import concat_all_gather, shuffled_across_ranks
from pretrain.methods.base import HierSiamese
from pretrain.methods.losses import info_nce


class MoCoV2(HierSiamese):
    """Queries from view 1 of each pair, keys from view 2 through the momentum encoder
    (`symmetric` adds the swapped term). Keys are shuffled across ranks before the key encoder
    (shuffle BN) and enqueued after the loss."""

    name = "mocov2"
    uses_target = True

    def __init__(self, *args, queue_size: int = 65536, temperature: float = 0.2, symmetric: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature, self.symmetric = temperature, symmetric
        dim = kwargs["proj"]["out"]
        for s in self.stages:
            self.register_buffer(f"queue{s}", F.normalize(torch.randn(queue_size, dim), dim=1))
            self.register_buffer(f"queue_ptr{s}", torch.zeros((), dtype=torch.long))

    def targets(self, views, params):
        with torch.no_grad(), shuffled_across_ranks(views, params) as (v, p, unshuffle):
            return unshuffle(self.target(v, p, self.view_stages(), self.batching))

    def pair_loss(self, k, s, z, p, t):
        q1, q2 = F.normalize(z[0], dim=1), F.normalize(z[1], dim=1)
        k1, k2 = F.normalize(t[0], dim=1), F.normalize(t[1], dim=1)
        queue = getattr(self, f"queue{s}").clone()
        loss = info_nce(q1, k2, queue, self.temperature)
        if self.symmetric:
            loss = 0.5 * (loss + info_nce(q2, k1, queue, self.temperature))
        self._enqueue(s, torch.cat([k2, k1]) if self.symmetric else k2)
        return loss

    @torch.no_grad()
    def _enqueue(self, s: int, keys: torch.Tensor) -> None:
        keys = concat_all_gather(keys)
        queue, ptr = getattr(self, f"queue{s}"), getattr(self, f"queue_ptr{s}")
        idx = (ptr + torch.arange(keys.shape[0], device=keys.device)) % queue.shape[0]
        queue[idx] = keys.to(queue.dtype)
        ptr.copy_((ptr + keys.shape[0]) % queue.shape[0])
