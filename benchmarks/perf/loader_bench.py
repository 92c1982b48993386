"""Is pretraining on this node data-bound or compute-bound? Run it where you train:

    python -m benchmarks.perf.loader_bench --data /datasets/imagenet/train --workers 16 [--device cuda]

For the method and the baseline, with the photometric augmentations in the loader workers
(`augment.device: loader`) and on the training device (`train`), side by side:
  loader images/s   what N workers deliver (decode, views, parameters), nothing else running
  step images/s     the training step alone on a cached batch (the batched photometric step included for `train`)
  wait fraction     running both as training does: the share of time spent waiting for the next batch
and the verdict "data-bound" (the loader delivers fewer images/s than the step consumes) or
"compute-bound". Without --data it writes a folder of 500x375 JPEGs first. Writes --out (JSON).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pretrain.config.config import load_config
from pretrain.engine.trainer import Pretrainer

from .augment_throughput import CONFIGS, ROOT, write_jpegs


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_from(trainer: Pretrainer, batches, steps, sync_each_step: bool = True) -> tuple[float, float, tuple]:
    """Training steps on batches taken from the iterator `batches`, one per item of `steps` (a range, or a
    tqdm over one): (seconds spent waiting for batches, seconds in all, the last batch's (views, params)).
    `sync_each_step` waits for the device after every step, so that a wait is charged to the loader."""
    waited, t0 = 0.0, time.perf_counter()
    for _ in steps:
        w0 = time.perf_counter()
        views, params, _, _ = next(batches)
        waited += time.perf_counter() - w0
        trainer.step(views, params)
        if sync_each_step:
            device_sync(trainer.device)
    device_sync(trainer.device)
    return waited, time.perf_counter() - t0, (views, params)


def measure(cfg: dict, steps: int) -> dict:
    """Loader, step and combined throughput of one config (images per second)."""
    trainer = Pretrainer(cfg)
    batch = trainer.per_rank
    trainer.sampler.set_epoch(0, 0)
    loader = trainer.make_loader()
    it = iter(loader)
    views, params, _, _ = next(it)  # warm-up: workers started, first batch cached
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc="  loader", unit="batch", leave=False):
        next(it)
    loader_ips = steps * batch / (time.perf_counter() - t0)
    del it
    trainer.step(views, params)
    device_sync(trainer.device)
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc="  step", unit="step", leave=False):
        trainer.step(views, params)
    device_sync(trainer.device)
    step_ips = steps * batch / (time.perf_counter() - t0)
    it = iter(loader)
    next(it)
    waited, total, _ = train_from(trainer, it, tqdm(range(steps), desc="  both", unit="step", leave=False))
    return {"loader_images_per_second": loader_ips, "step_images_per_second": step_ips,
            "training_images_per_second": steps * batch / total, "wait_fraction": waited / total,
            "verdict": "data-bound" if loader_ips < step_ips else "compute-bound",
            "views_per_image": len(views), "batch_per_process": batch, "device": str(trainer.device)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="an ImageFolder root (default: generated JPEGs)")
    p.add_argument("--workers", type=int, default=8, help="loader workers (data.workers)")
    p.add_argument("--batch", type=int, default=64, help="images per step in this process")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (train.device)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--modes", nargs="+", default=["loader", "train"], choices=["loader", "train"])
    p.add_argument("--out", type=Path, default=Path("loader_bench.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            n = args.batch * (args.steps + 2) * 2
            print(f"[loader_bench] writing {n} JPEGs (500x375) to {tmp}")
            data = Path(tmp) / "images"
            write_jpegs(data / "class0", n)
        results = {}
        for name in args.configs:
            for mode in args.modes:
                over = [f"data.train={data}", "data.class_list=null", f"data.workers={args.workers}", f"optim.batch_size={args.batch}",
                        f"augment.device={mode}", f"train.device={args.device}", f"method.arch={args.arch}",
                        f"augment.size={args.size}", f"train.output={Path(tmp) / f'{name}_{mode}'}"]
                print(f"[loader_bench] {name}, augment.device={mode}")
                results[f"{name}/{mode}"] = measure(load_config(ROOT / CONFIGS[name], over), args.steps)
    out = {"setting": {"data": str(args.data or "generated 500x375 JPEGs"), "workers": args.workers, "batch": args.batch,
                       "steps": args.steps, "arch": args.arch, "size": args.size,
                       "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
           "results": results}
    from pretrain.runs.files import write_json

    write_json(args.out, out)
    print(f"{'config / augment.device':28s} {'loader img/s':>12s} {'step img/s':>11s} {'both img/s':>11s} {'waiting':>8s}  verdict")
    for key, r in results.items():
        print(f"{key:28s} {r['loader_images_per_second']:12.1f} {r['step_images_per_second']:11.1f} "
              f"{r['training_images_per_second']:11.1f} {100 * r['wait_fraction']:7.1f}%  {r['verdict']}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
