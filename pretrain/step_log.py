"""Per-step losses kept on the training device and read back together at logging and checkpoint steps.

Reading a loss back (`float(loss)`) makes the host wait for the GPU, so the next batch's copy and
augmentation cannot overlap the step. The trainer instead hands each step's values, still on the device,
to `StepLog.add`; `flush()` averages everything pending over the processes in one all-reduce and reads it
back once. A non-finite value on any process becomes non-finite in the average, so every process sees it
at the same flush (and can stop with the same message).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .dist import world_size


class StepLog:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.pending: list[tuple[dict, torch.Tensor]] = []

    def add(self, record: dict, values: dict[str, torch.Tensor]) -> None:
        """record: host values of one step (step, epoch, lr); values: scalar tensors on the device, same keys
        every step."""
        self.keys = list(values)
        self.pending.append((record, torch.stack([v.detach().float() for v in values.values()])))

    def flush(self) -> list[dict]:
        """The pending steps' records with their values as floats, averaged over processes (one collective,
        one read-back). Every process must call it at the same steps."""
        if not self.pending:
            return []
        values = torch.stack([v for _, v in self.pending])  # (steps, keys)
        if world_size() > 1:
            dist.all_reduce(values)
            values /= world_size()
        rows = values.tolist()
        records = [dict(rec, **dict(zip(self.keys, row))) for (rec, _), row in zip(self.pending, rows)]
        self.pending = []
        return records
