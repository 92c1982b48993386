"""How much CPU does the data loader spend per image, before and after the batched photometric path?
`python -m benchmarks.perf.augment_throughput` (part of `make perf`)

One core (torch.set_num_threads(1)), the same JPEGs (500x375, written by the demo world's renderer),
224 px views, measured side by side in one run (interleaved rounds, medians):
  decode          JPEG -> uint8 tensor
  today           the per-image path this project had before `augment.device` (torchvision's
                  functional ops on uint8, per view: `torchvision_views.torchvision_view`)
  loader          `augment.device: loader`: the per-image path now (the same maths as the batched one)
  train           `augment.device: train`: what stays in the loader (draw parameters, crop + resize, flip)
  batched step    the photometric step of `train` over the whole (views x batch) tensor, per image
for the method (4 pairs, 8 views) and the baseline (1 pair).
  loader_ratio = (decode + train) / (decode + today) for the method, target <= 1/6.
With a GPU, the batched step is also timed on it. Writes results/augment_throughput.json.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.io import decode_image, read_file
from tqdm import tqdm

from pretrain.config.config import load_config
from pretrain.engine.build import build_device_augment, build_transform

from .torchvision_views import torchvision_view

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"method": "configs/pretrain/simsiam-hier_resnet50_8xb32-coslr-200e_in100.yaml",
           "baseline": "configs/pretrain/simsiam_resnet50_8xb32-coslr-200e_in100.yaml"}


def write_jpegs(folder: Path, n: int, seed: int = 0, size=(375, 500)) -> list[Path]:
    """n demo-world scenes cropped to (height, width), saved as JPEGs (quality as the demo world)."""
    from benchmarks.demo_world.formats import _save_jpeg
    from benchmarks.demo_world.render import WorldSpec, scene

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img, _ = scene(WorldSpec(), rng, size=max(size))
        paths.append(folder / f"img_{i:03d}.jpg")
        _save_jpeg(np.ascontiguousarray(img[: size[0], : size[1]]), paths[-1])
    return paths


def _today(transform, img: torch.Tensor, g: torch.Generator):
    """The old per-image path: draw each view's parameters, then torchvision's uint8 ops."""
    out = []
    for pair in transform.pairs:
        for pipe in pair.views:
            v = pipe.sample(img.shape[-2], img.shape[-1], g)
            out.append(torchvision_view(img, v, pipe.size))
    return out


def _median_ms(samples: list[float], per: int) -> float:
    return 1000 * statistics.median(samples) / per


def loader_costs(size: int, images: int, repeats: int, jpegs: list[Path]) -> dict:
    data = [read_file(str(p)) for p in jpegs[:images]]
    decoded = [decode_image(d) for d in data]
    result = {}
    for name, cfg_path in CONFIGS.items():
        over = [f"augment.size={size}"]
        cfgs = {mode: load_config(ROOT / cfg_path, over + [f"augment.device={mode}"]) for mode in ("loader", "train")}
        tfs = {mode: build_transform(c, "cpu") for mode, c in cfgs.items()}
        g = torch.Generator().manual_seed(0)
        runs = {"decode": lambda: [decode_image(d) for d in data],
                "today": lambda tfs=tfs, g=g: [_today(tfs["loader"], im, g) for im in decoded],
                "loader": lambda tfs=tfs, g=g: [tfs["loader"](im, g) for im in decoded],
                "train": lambda tfs=tfs, g=g: [tfs["train"](im, g) for im in decoded]}
        times = {k: [] for k in runs}
        for _ in tqdm(range(repeats), desc=f"loader costs ({name})", unit="round", leave=False):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        ms = {k: _median_ms(v, len(decoded)) for k, v in times.items()}
        batch = [tfs["train"](im, g) for im in decoded]
        views = [torch.stack(v) for v in zip(*(b[0] for b in batch))]
        params = [torch.stack(p) for p in zip(*(b[1] for b in batch))]
        step = build_device_augment(cfgs["train"], "cpu")  # one view (B images) per call
        step(views, params)  # warm-up
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(views, params)
            t.append(time.perf_counter() - t0)
        ms["batched_step_cpu"] = _median_ms(t, len(decoded))
        if torch.cuda.is_available():
            ms["batched_step_gpu"] = _gpu_ms(build_device_augment(cfgs["train"], "cuda"), views, params, repeats)
        result[name] = {"views_per_image": len(views), "ms_per_image": ms,
                        "images_per_second_per_core": {k: 1000 / (ms["decode"] + ms[k]) for k in ("today", "loader", "train")},
                        "loader_ratio": (ms["decode"] + ms["train"]) / (ms["decode"] + ms["today"])}
    return result


def _gpu_ms(step, views, params, repeats: int) -> float:
    views = [v.cuda() for v in views]
    params = [p.cuda() for p in params]
    step(views, params)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step(views, params)
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeats / views[0].shape[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/augment_throughput.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        costs = loader_costs(args.size, args.images, args.repeats, write_jpegs(Path(tmp), args.images))
    m = costs["method"]
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": 1, "torch": torch.__version__,
                          "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "setting": {"size": args.size, "images": args.images, "repeats": args.repeats, "jpeg": "500x375",
                          "configs": CONFIGS},
              **costs, "target": {"loader_ratio": "<= 1/6"}, "pass": {"loader_ratio": m["loader_ratio"] <= 1 / 6}}
    if not torch.cuda.is_available():
        result["gpu"] = "not measured: no GPU on this machine (run this file on a GPU node for batched_step_gpu)"
    from pretrain.runs.files import write_json

    write_json(args.out, result)
    for name, c in costs.items():
        ms = c["ms_per_image"]
        print(f"{name} ({c['views_per_image']} views): decode {ms['decode']:.2f} ms, today {ms['today']:.2f}, loader "
              f"{ms['loader']:.2f}, train {ms['train']:.2f} ms per image; batched step on the CPU {ms['batched_step_cpu']:.2f} "
              f"ms per image; loader CPU time train/today {c['loader_ratio']:.3f}")
    print(f"-> {args.out} (target for the method: loader_ratio <= 1/6 = {1 / 6:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
