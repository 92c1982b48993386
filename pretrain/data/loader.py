"""The pretraining DataLoader: built once per run (persistent workers, 2 batches prefetched each), and the
shared-memory (/dev/shm) budget it needs, checked before it starts and named when a worker dies of it."""
from __future__ import annotations

import logging
import os
import shutil

import torch
from torch.utils.data import DataLoader

from pretrain.data.sampler import collate_views

log = logging.getLogger("pretrain")

SHM_HELP = ("The DataLoader workers hand batches to the trainer through shared memory (/dev/shm), and "
            "/dev/shm is too small for data.workers x 2 prefetched batches ({need:.0f} MB needed, {free:.0f} MB free). "
            "Give the container more (docker run --shm-size=16g; Kubernetes: an emptyDir with medium: Memory at "
            "/dev/shm), lower data.workers or optim.batch_size, or use augment.device=train (uint8 views, 4x smaller).")


def shm_need(batch: int, sizes: list[int], uint8: bool, workers: int, prefetch: int = 2) -> int:
    """Bytes of shared memory the loader's prefetched batches take: workers x prefetch batches of views
    (3 x S x S each, 1 byte uint8 or 4 bytes float32) per image."""
    per_image = sum(3 * s * s for s in sizes) * (1 if uint8 else 4)
    return workers * prefetch * batch * per_image


def shm_free(path: str = "/dev/shm") -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def build_loader(dataset, sampler, per_rank: int, workers: int, device: torch.device, need: int) -> DataLoader:
    """The run's one DataLoader: workers stay alive across epochs, 2 batches prefetched per worker;
    `sampler.set_epoch` before each pass chooses the epoch and the batch it starts at. A warning when
    /dev/shm has less than `need` bytes free (`shm_need`), and when the workers outnumber this process's cores."""
    free = shm_free()
    if workers and free is not None and need > free:
        log.warning(SHM_HELP.format(need=need / 2**20, free=free / 2**20))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers > cores:
        log.warning("data.workers=%d but this process may use %d CPU core(s) (its affinity: under SLURM, --cpus-per-task); "
                    "the workers would share them and starve the GPU: ask for --cpus-per-task=%d or more, or set "
                    "data.workers=%d", workers, cores, workers + 1, max(cores - 1, 0))
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=workers, collate_fn=collate_views,
                      drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=2 if workers else None)


def shm_guarded(loader, need: int):
    """Iterate `loader`; a worker killed for want of shared memory becomes an error that names /dev/shm."""
    try:
        yield from loader
    except RuntimeError as e:
        text = str(e)
        if "shared memory" in text or "Bus error" in text or "/dev/shm" in text:
            raise RuntimeError(SHM_HELP.format(need=need / 2**20, free=(shm_free() or 0) / 2**20)
                               + f" (DataLoader: {text.splitlines()[0]})") from None
        raise
