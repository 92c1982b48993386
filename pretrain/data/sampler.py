"""Data order (a sampler that splits an epoch across ranks and resumes mid-epoch) and batching of views."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """Yields (index, epoch) for this rank: a seeded shuffle per epoch, cut to whole batches
    (every rank gets `num_batches` batches of `batch_size`), starting at batch `start_batch`."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.num_batches = size // (batch_size * world_size)
        if self.num_batches == 0:
            raise ValueError(f"{size} images cannot fill one global batch of {batch_size * world_size}; "
                             "lower optim.batch_size or add images")
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.num_batches - self.start_batch) * self.batch_size

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.size)
        n = self.num_batches * self.batch_size
        mine = order[: n * self.world_size][self.rank::self.world_size]
        for i in mine[self.start_batch * self.batch_size:].tolist():
            yield i, self.epoch


def collate_views(batch):
    """[(views, params, label, skipped)] -> (views: list of (B, 3, S, S), params: list of (B, P), labels (B,),
    skipped: the unreadable image paths replaced in this batch)."""
    views, params, labels, skipped = zip(*batch)
    return ([torch.stack(v) for v in zip(*views)], [torch.stack(p) for p in zip(*params)], torch.tensor(labels),
            [path for paths in skipped for path in paths])
