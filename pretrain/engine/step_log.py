"""Per-step losses kept on the training device and read back together at logging and checkpoint steps.

Reading a loss back (`float(loss)`) makes the host wait for the GPU, so the next batch's copy and
augmentation cannot overlap the step. The trainer instead hands each step's values, still on the device,
to `StepLog.add`; `flush()` averages everything pending over the processes in one all-reduce and reads it
back once. A non-finite value on any process becomes non-finite in the average, so every process sees it
at the same flush (and can stop with the same message). The same collective sums the processes' host
counts (unreadable images met, a stop or checkpoint request), so every process takes the same decision.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from pretrain.distributed.collectives import world_size


class StepLog:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.pending: list[tuple[dict, torch.Tensor]] = []

    def add(self, record: dict, values: dict[str, torch.Tensor]) -> None:
        """record: host values of one step (step, epoch, lr); values: scalar tensors on the device, same keys
        every step."""
        self.keys = list(values)
        self.pending.append((record, torch.stack([v.detach().float() for v in values.values()])))

    def flush(self, counts: dict[str, float] | None = None) -> tuple[list[dict], dict[str, float]]:
        """(the pending steps' records with their values as floats, averaged over processes; `counts` summed
        over processes), in one collective and one read-back. Every process must call it at the same steps."""
        counts = counts or {}
        if not self.pending and not counts:
            return [], {}
        values = torch.stack([v for _, v in self.pending]) if self.pending else torch.zeros(0, len(self.keys))
        extra = torch.tensor(list(counts.values()), dtype=values.dtype, device=values.device)
        flat = torch.cat([values.flatten(), extra])
        if world_size() > 1:
            dist.all_reduce(flat)
        host, k, n = flat.tolist(), len(self.keys), values.numel()
        records = [dict(rec, **{key: v / world_size() for key, v in zip(self.keys, host[i * k:(i + 1) * k])})
                   for i, (rec, _) in enumerate(self.pending)]
        self.pending = []
        return records, dict(zip(counts, host[n:]))
