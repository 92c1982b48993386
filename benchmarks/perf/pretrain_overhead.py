"""Is the method's extra cost only its extra FLOPs? And is the parameter-recording augmentation as
fast as a plain torchvision v2 pipeline?   `python -m benchmarks.perf.pretrain_overhead` (`make perf`)

Measured side by side in one run, same backbone, batch and images:
  overhead_vs_flops = (method step time / baseline step time) / (method FLOPs / baseline FLOPs)
                      target <= 1.10 (the extra view pairs cost FLOPs by design; nothing else should)
  aug_throughput    = recording pipeline images/s / torchvision.transforms.v2 images/s, target >= 0.95
  batching          = the method's step time with views run one by one, per pair, or shared early stages
                      (all three compute the same function: per-view BN statistics)
Steps are timed as medians over repeats, interleaving baseline and method to share machine noise.
Writes benchmarks/perf/results/pretrain_overhead.json (committed; rerun on your hardware).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2
from tqdm import tqdm

from pretrain.config.config import load_config
from pretrain.engine.build import build_model, build_transform
from pretrain.transforms.augment import AugPipeline
from pretrain.transforms.photometric import blur_kernel

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"baseline": "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml",
           "method": "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"}


AUTHORS_HEADS = ["hier.head_reduce=[64, 128, 256]", "expand.dim=512"]  # the demo presets use smaller ones


def _setup(name: str, arch: str, size: int, batch: int, batching: str | None = None):
    over = [f"method.arch={arch}", f"augment.size={size}", *AUTHORS_HEADS] + ([f"method.batching={batching}"] if batching else [])
    cfg = load_config(ROOT / CONFIGS[name], over)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tf = build_transform(cfg)
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, size + size // 4, size + size // 4), dtype=torch.uint8, generator=g) for _ in range(batch)]
    per_image = [tf(img, g) for img in imgs]
    views = [torch.stack(v) for v in zip(*(p[0] for p in per_image))]
    params = [torch.stack(p) for p in zip(*(p[1] for p in per_image))]
    return model, opt, views, params


def _step(model, opt, views, params) -> None:
    loss, _ = model(views, params)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.update_target()


def _flops(model, views, params) -> int:
    with FlopCounterMode(display=False) as fc:
        loss, _ = model(views, params)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_ratios(arch: str, size: int, batch: int, repeats: int) -> dict:
    runs = {"baseline": _setup("baseline", arch, size, batch), "method": _setup("method", arch, size, batch)}
    for mode in ("view", "pair", "shared"):
        runs[f"method[{mode}]"] = _setup("method", arch, size, batch, mode)
    flops = {k: _flops(*r[:1], *r[2:]) for k, r in runs.items() if k in ("baseline", "method")}
    times = {k: [] for k in runs}
    for r in runs.values():
        _step(*r)  # warm-up
    for _ in tqdm(range(repeats), desc="steps (interleaved)", unit="round"):
        for k, r in runs.items():
            times[k].append(_timed(lambda r=r: _step(*r)))
    med = {k: statistics.median(v) for k, v in times.items()}
    time_ratio = med["method"] / med["baseline"]
    flop_ratio = flops["method"] / flops["baseline"]
    return {"step_seconds": med, "flops_per_step": flops, "time_ratio": time_ratio, "flop_ratio": flop_ratio,
            "overhead_vs_flops": time_ratio / flop_ratio, "method_batching": runs["method"][0].batching,
            "batching_seconds": {m: med[f"method[{m}]"] for m in ("view", "pair", "shared")}}


def aug_ratio(size: int, images: int, repeats: int) -> dict:
    """Same augmentations (SimSiam's aug+ set) through the recording pipeline and through v2."""
    ours = AugPipeline(size=size)
    ref = v2.Compose([
        v2.RandomResizedCrop(size, scale=ours.crop_scale, ratio=ours.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(ours.flip_p),
        v2.RandomApply([v2.ColorJitter(*ours.jitter)], p=ours.jitter_p),
        v2.RandomApply([v2.GaussianBlur(blur_kernel(ours.size), ours.blur_sigma)], p=ours.blur_p),
        v2.RandomGrayscale(ours.gray_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(ours.mean), list(ours.std)),
    ])
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 2 * size, 2 * size), dtype=torch.uint8, generator=g) for _ in range(images)]
    t = {"recording": [], "torchvision_v2": []}
    for _ in tqdm(range(repeats), desc="augmentation (interleaved)", unit="round"):
        t["recording"].append(_timed(lambda: [ours(im, g) for im in imgs]))
        t["torchvision_v2"].append(_timed(lambda: [ref(im) for im in imgs]))
    ips = {k: images / statistics.median(v) for k, v in t.items()}
    return {"images_per_second": ips, "aug_throughput": ips["recording"] / ips["torchvision_v2"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=12)
    p.add_argument("--aug-images", type=int, default=64)
    p.add_argument("--aug-size", type=int, default=224)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/pretrain_overhead.json")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    steps = step_ratios(args.arch, args.size, args.batch, args.repeats)
    aug = aug_ratio(args.aug_size, args.aug_images, args.repeats)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available(), "torch": torch.__version__},
              "setting": {"arch": args.arch, "size": args.size, "batch": args.batch, "repeats": args.repeats,
                          "baseline": CONFIGS["baseline"], "method": CONFIGS["method"], "method_overrides": AUTHORS_HEADS},
              **steps, **aug,
              "targets": {"overhead_vs_flops": "<= 1.10", "aug_throughput": ">= 0.95"},
              "pass": {"overhead_vs_flops": steps["overhead_vs_flops"] <= 1.10, "aug_throughput": aug["aug_throughput"] >= 0.95}}
    from pretrain.runs.files import write_json

    write_json(args.out, result)
    print(f"step time ratio {steps['time_ratio']:.2f}, FLOP ratio {steps['flop_ratio']:.2f} -> overhead_vs_flops "
          f"{steps['overhead_vs_flops']:.3f} (target <= 1.10)")
    print("method step seconds by batching: " + ", ".join(f"{k} {v:.3f}" for k, v in steps["batching_seconds"].items())
          + f" (auto picks {steps['method_batching']} here)")
    print(f"augmentation throughput ratio {aug['aug_throughput']:.3f} (target >= 0.95) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
