"""The project's GPU check: what a user's GPU node does with this code, in one run of about 5-8 minutes.

    python -m benchmarks.perf.gpu_check                  # on a node with a CUDA GPU
    python -m benchmarks.perf.gpu_check --dry            # anywhere, on the CPU, tiny sizes (CI runs this)

Needs torch, torchvision, pyyaml and tqdm only (no detectron2, mmseg or tensorboard). Sections, each
written to the JSON as soon as it is measured (a section that fails records its error; the run stops
cleanly at --budget-s, keeping what it has):

  throughput      images/s (loader running, as in training), step-only images/s, the share of time spent
                  waiting for data, and peak GPU memory: SimSiam vs SimSiam + method, ResNet-50, 224 px,
                  AMP, 32 images per GPU, per batching mode and per augment.device
  host_syncs      host-device synchronisations per training step by source line
                  (`torch.cuda.set_sync_debug_mode`; on a CPU, the host reads counted by `hot_loop.HostReads`)
  augment_parity  the batched photometric step on the device vs the per-image path in the loader: max |diff|
  batching_equal  view / pair / shared batching in fp32: loss and gradients, max relative difference
  two_process     2 gloo processes on the one device (SyncBN + DDP for SimSiam and Barlow Twins, shuffle-BN for
                  MoCo v2) vs one process on the global batch: max gradient difference
  methods         BYOL, MoCo v2 and Barlow Twins with the method: images/s and peak memory
  flop_ratio      the method's step-time ratio over its FLOP ratio (1 = its extra FLOPs cost what they weigh)

Writes --out (default benchmarks/perf/results/gpu_check.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .loader_bench import device_sync, train_from

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs/pretrain"


@dataclass
class Setting:
    device: torch.device
    arch: str
    size: int
    batch: int
    steps: int
    warmup: int
    workers: int
    data: Path
    work: Path
    dry: bool

    def images_needed(self) -> int:
        """Images one epoch must hold for every section's draws from one loader iterator: `train_rate` takes
        warmup + steps batches, `host_syncs` 2, `augment_parity` 8 images."""
        return max(self.batch * (self.warmup + self.steps), 2 * self.batch, 8)

    def overrides(self, *extra: str) -> list[str]:
        o = [f"method.arch={self.arch}", f"augment.size={self.size}", f"optim.batch_size={self.batch}",
             f"data.workers={self.workers}", f"data.train={self.data}", f"train.output={self.work / 'run'}",
             f"train.device={self.device.type}", "train.amp=true", "data.class_list=null"]
        if self.dry:
            o += ["method.proj={hidden: 64, out: 32}", "method.pred_hidden=16", "hier.head_reduce=[8, 8, 8]",
                  "expand.dim=8", "method.queue_size=64"]
        return o + list(extra)


def config(name: str, s: Setting, *extra: str) -> dict:
    from pretrain.config.config import load_config

    return load_config(CONFIGS / f"{name}_resnet50_8xb32-coslr-200e_in100.yaml", s.overrides(*extra))


def write_images(folder: Path, n: int, size=(375, 500)) -> None:
    """n random-texture JPEGs in one class folder (decoding cost like a photo's; content irrelevant here)."""
    from torchvision.io import encode_jpeg, write_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        low = torch.randint(0, 256, (3, size[0] // 8, size[1] // 8), generator=g, dtype=torch.uint8)
        img = torch.nn.functional.interpolate(low[None].float(), size=size, mode="bilinear")[0].clamp(0, 255).byte()
        write_file(str(folder / f"img_{i:04d}.jpg"), encode_jpeg(img, quality=90))


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def train_rate(cfg: dict, s: Setting) -> dict:
    """Run `s.steps` training steps from the loader (after `s.warmup`): images/s, step-only images/s, wait
    fraction, peak memory."""
    from pretrain.engine.trainer import Pretrainer

    if s.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(s.device)
    t = Pretrainer(cfg)
    t.sampler.set_epoch(0, 0)
    loader = t.make_loader()
    it = iter(loader)
    train_from(t, it, range(s.warmup), sync_each_step=False)
    waited, total, (views, params) = train_from(t, it, range(s.steps), sync_each_step=False)  # as training runs
    t0 = time.perf_counter()
    for _ in range(s.steps):  # the last batch again: the step alone
        t.step(views, params)
    device_sync(s.device)
    step_only = time.perf_counter() - t0
    t.step_log.flush()
    del it, loader
    return {"images_per_s": round(s.steps * t.per_rank / total, 1), "step_images_per_s": round(s.steps * t.per_rank / step_only, 1),
            "wait_fraction": round(waited / total, 3), "peak_memory_mb": _peak_mb(s.device),
            "runtime": t.runtime.record()}


def throughput(s: Setting, bar) -> dict:
    out = {}
    rows = [("simsiam", "view", a) for a in ("loader", "train")] + \
        [("simsiam-hier", b, a) for b in ("view", "pair", "shared") for a in ("loader", "train")]
    for name, batching, where in rows:
        bar.set_postfix_str(f"{name} {batching} {where}")
        out[f"{name}|{batching}|{where}"] = train_rate(config(name, s, f"method.batching={batching}", f"augment.device={where}"), s)
    return out


def host_syncs(s: Setting, bar) -> dict:
    """Synchronisations per step by source line, over `s.steps` steps of SimSiam + method (train, shared)."""
    from pretrain.engine.trainer import Pretrainer

    from .hot_loop import HostReads

    t = Pretrainer(config("simsiam-hier", s, "method.batching=shared", "augment.device=train", "data.workers=0"))
    t.sampler.set_epoch(0, 0)
    batches = [b for _, b in zip(range(2), t.make_loader())]
    t.step(*batches[0][:2])  # warm-up
    if s.device.type == "cuda":
        device_sync(s.device)
        sites: Counter = Counter()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(s.steps):
                    t.step(*batches[1][:2])
        finally:
            torch.cuda.set_sync_debug_mode(0)
        for w in caught:
            if "synchroniz" in str(w.message):
                sites[f"{os.path.relpath(w.filename, ROOT) if w.filename.startswith(str(ROOT)) else w.filename}:{w.lineno}"] += 1
        how = "torch.cuda.set_sync_debug_mode('warn')"
    else:
        reads = HostReads()
        with reads:
            for _ in range(s.steps):
                t.step(*batches[1][:2])
        sites, how = reads.sites, "host reads counted (hot_loop.HostReads); photometric.py:index_plan runs on the host copy"
    t.step_log.flush()
    return {"how": how, "steps": s.steps, "per_step": {k: v / s.steps for k, v in sorted(sites.items())}}


def augment_parity(s: Setting, bar) -> dict:
    """The same images and parameter vectors through the loader's per-image path and the device's batched path."""
    from pretrain.data.views import MultiViewDataset
    from pretrain.engine.build import build_transform
    from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD
    from pretrain.transforms.photometric import DeviceAugment

    cfg = config("simsiam-hier", s)
    per_image = MultiViewDataset(str(s.data), build_transform(cfg, "cpu"), seed=0)
    batched = MultiViewDataset(str(s.data), build_transform(cfg, "cuda"), seed=0)
    n = min(8, len(per_image))
    want = [torch.stack(v) for v in zip(*(per_image[(i, 0)][0] for i in range(n)))]
    geo = [batched[(i, 0)] for i in range(n)]
    views = [torch.stack(v) for v in zip(*(g[0] for g in geo))]
    params = [torch.stack(p) for p in zip(*(g[1] for g in geo))]
    got = DeviceAugment(IMAGENET_MEAN, IMAGENET_STD, per_view=s.device.type == "cpu")(views, params, s.device)
    diff = max(float((a.cpu() - b).abs().max()) for a, b in zip(got, want))
    return {"images": n, "views": len(want), "max_abs_diff": diff, "ok": diff < 1e-3}


def _max_rel(a: dict, b: dict) -> float:
    """Largest |a - b| over all tensors, relative to the largest |b| (a per-tensor ratio would blow up on
    gradients that are zero up to rounding, e.g. a bias followed by BatchNorm)."""
    return max(float((a[k] - b[k]).abs().max()) for k in b) / max(float(b[k].abs().max()) for k in b)


def batching_equal(s: Setting, bar) -> dict:
    """SimSiam + method in fp32 (TF32 off): view / pair / shared give the same loss and gradients."""
    from pretrain.engine.build import build_model

    cfg = config("simsiam-hier", s)
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    b = max(4, s.batch // 4)
    views = [torch.randn(b, 3, s.size, s.size, generator=g).to(s.device) for _ in range(8)]
    params = [torch.rand(b, 22, generator=g).to(s.device) for _ in range(8)]
    out = {}
    try:
        for mode in ("view", "pair", "shared"):
            torch.manual_seed(0)
            model = build_model(cfg, s.device.type).to(s.device)
            model.batching = mode
            loss, _ = model(views, params)
            loss.backward()
            out[mode] = (float(loss), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    ref_loss, ref = out["view"]
    res = {m: {"loss_rel_diff": abs(out[m][0] - ref_loss) / abs(ref_loss), "grad_max_rel_diff": _max_rel(out[m][1], ref)}
           for m in ("pair", "shared")}
    res["ok"] = all(r["loss_rel_diff"] < 1e-5 and r["grad_max_rel_diff"] < 1e-4 for r in res.values())
    return res


def _two_process_worker(rank: int, world: int, port: int, name: str, device: str, cfg: dict, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from pretrain.distributed.syncbn import convert_sync_batchnorm
    from pretrain.engine.build import build_model
    from pretrain.models.viewbn import make_per_view

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(cfg, dev.type)
    if name != "mocov2":  # MoCo v2 uses shuffle-BN across processes, not SyncBN
        model = make_per_view(convert_sync_batchnorm(model, dev))
    model = model.to(dev).double()
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)
    views, params = _two_process_inputs(cfg, dev)
    b = views[0].shape[0] // world
    loss, _ = ddp([v[rank * b:(rank + 1) * b] for v in views], [p[rank * b:(rank + 1) * b] for p in params])
    loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    queues = {k: v.cpu() for k, v in model.state_dict().items() if k.startswith("queue")}
    torch.save({"grads": grads, "queues": queues, "loss": float(loss)}, f"{out}.{rank}")
    dist.destroy_process_group()


def _two_process_inputs(cfg: dict, dev: torch.device):
    g = torch.Generator().manual_seed(1)
    n, size = 2 * len(cfg["hier"]["pairs"]) if cfg["hier"]["enabled"] else 2, min(cfg["augment"]["size"], 64)
    return ([torch.randn(8, 3, size, size, generator=g, dtype=torch.float64).to(dev) for _ in range(n)],
            [torch.rand(8, 22, generator=g, dtype=torch.float64).to(dev) for _ in range(n)])


def two_process(s: Setting, bar) -> dict:
    """2 gloo processes on this one device vs one process on the global batch, float64."""
    import socket

    import torch.multiprocessing as mp

    from pretrain.engine.build import build_model

    res = {}
    for name in ("simsiam", "barlowtwins", "mocov2"):
        bar.set_postfix_str(name)
        cfg = config(f"{name}-hier", s, "method.batching=shared", "method.queue_size=64")
        cfg["augment"]["size"] = min(cfg["augment"]["size"], 64)
        if name == "barlowtwins":
            cfg["method"]["proj"].update(hidden=256, out=256)
        torch.manual_seed(0)
        model = build_model(cfg, s.device.type).to(s.device).double()
        loss, _ = model(*_two_process_inputs(cfg, s.device))
        loss.backward()
        ref = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        out = s.work / f"two_{name}.pt"
        mp.spawn(_two_process_worker, args=(2, port, name, str(s.device), cfg, str(out)), nprocs=2, join=True)
        r0, r1 = (torch.load(f"{out}.{k}", weights_only=True) for k in (0, 1))
        if name == "mocov2":  # shuffle-BN normalises each process's share: not one process's maths; check the plumbing
            res[name] = {"finite": all(bool(torch.isfinite(g).all()) for g in r0["grads"].values()),
                         "queues_equal_across_processes": all(torch.equal(r0["queues"][k], r1["queues"][k]) for k in r0["queues"]),
                         "grads_equal_across_processes": _max_rel(r1["grads"], r0["grads"]) < 1e-12}
        else:
            res[name] = {"grad_max_rel_diff": _max_rel(r0["grads"], ref), "parameters": len(ref)}
    res["ok"] = all(r.get("grad_max_rel_diff", 0) < 1e-6 and all(v for k, v in r.items() if isinstance(v, bool))
                    for r in res.values())
    return res


def methods(s: Setting, bar) -> dict:
    out = {}
    for name in ("byol-hier", "mocov2-hier", "barlowtwins-hier"):
        bar.set_postfix_str(name)
        out[name] = train_rate(config(name, s, "method.batching=auto", "augment.device=auto"), s)
    return out


def flop_ratio(s: Setting, bar, measured: dict) -> dict:
    """FLOPs of one training forward+backward (torch.utils.flop_counter) of SimSiam + method over SimSiam,
    against the ratio of their measured step times (train, shared batching)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pretrain.engine.build import build_model

    flops = {}
    for name in ("simsiam", "simsiam-hier"):
        cfg = config(name, s, "method.batching=shared")
        model = build_model(cfg, s.device.type).to(s.device)
        n = 2 * len(model.stages)
        views = [torch.randn(4, 3, s.size, s.size, device=s.device) for _ in range(n)]
        params = [torch.rand(4, 22, device=s.device) for _ in range(n)]
        with FlopCounterMode(display=False) as counter:
            loss, _ = model(views, params)
            loss.backward()
        flops[name] = counter.get_total_flops()
    res = {"flops_per_image": {k: v / 4 for k, v in flops.items()}, "flop_ratio": flops["simsiam-hier"] / flops["simsiam"]}
    tp = measured.get("throughput", {})
    base, meth = tp.get("simsiam|view|train", {}), tp.get("simsiam-hier|shared|train", {})
    if "step_images_per_s" in base and "step_images_per_s" in meth:
        res["time_ratio"] = base["step_images_per_s"] / meth["step_images_per_s"]
        res["time_ratio_over_flop_ratio"] = res["time_ratio"] / res["flop_ratio"]
    return res


GLOBAL_BATCH = 256  # the presets' total batch (8 GPUs x 32)


def setting(dry: bool, gpus_in_job: int, data: Path, work: Path) -> Setting:
    """The check's setting: on a GPU, ResNet-50 at 224 px with the per-GPU batch a job of `gpus_in_job` GPUs runs
    (256 / 16 = 16 per GPU), 10 warm-up steps (cudnn's autotuning and the loader's start stay out of the timed
    window) and 30 timed steps; dry: the same arithmetic at toy size on the CPU."""
    if dry:
        return Setting(torch.device("cpu"), "resnet18", 32, 4, 2, 1, 0, data, work, True)
    return Setting(torch.device("cuda", 0), "resnet50", 224, GLOBAL_BATCH // gpus_in_job, 30, 10, min(8, os.cpu_count() or 1),
                   data, work, False)


SECTIONS = ("throughput", "host_syncs", "augment_parity", "batching_equal", "two_process", "methods", "flop_ratio")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry", action="store_true", help="CPU, ResNet-18, 32 px, 2 steps: checks that the check runs")
    p.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/perf/results/gpu_check.json, "
                   "gpu_check_dry.json with --dry)")
    p.add_argument("--data", type=Path, default=None, help="an ImageFolder root to read (default: generated JPEGs)")
    p.add_argument("--budget-s", type=float, default=480, help="stop starting sections after this many seconds")
    p.add_argument("--only", nargs="*", choices=SECTIONS, help="run these sections only")
    p.add_argument("--gpus-in-job", type=int, default=8, choices=[1, 2, 4, 8, 16, 32],
                   help=f"the job the per-GPU batch stands for: {GLOBAL_BATCH} / this (default 8: 32 per GPU)")
    args = p.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible; run on a GPU node, or --dry to check the script on the CPU", file=sys.stderr)
        return 2
    out = args.out or ROOT / f"benchmarks/perf/results/gpu_check{'_dry' if args.dry else ''}.json"
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = setting(args.dry, args.gpus_in_job, args.data or work / "data", work)
        if args.data is None:
            write_images(s.data / "cls", s.images_needed(), (48, 64) if args.dry else (375, 500))
        elif sum(1 for _ in s.data.rglob("*.*")) < s.images_needed():
            print(f"error: --data {s.data} holds fewer than the {s.images_needed()} images the check draws", file=sys.stderr)
            return 2
        result = {"device": torch.cuda.get_device_name(0) if s.device.type == "cuda" else platform.processor() or "cpu",
                  "dry": args.dry, "torch": torch.__version__, "cuda": torch.version.cuda,
                  "setting": {"arch": s.arch, "size": s.size, "batch_per_gpu": s.batch, "gpus_in_job": args.gpus_in_job,
                              "global_batch": s.batch * args.gpus_in_job, "warmup_steps": s.warmup, "steps": s.steps,
                              "images": s.images_needed(), "workers": s.workers}, "sections": {}, "seconds": None}
        sections = args.only or SECTIONS
        bar = tqdm(sections, desc="gpu check", unit="section")
        for name in bar:
            if time.time() - t_start > args.budget_s:
                result["sections"][name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
                continue
            t0 = time.time()
            try:
                fn = globals()[name]
                got = fn(s, bar, result["sections"]) if name == "flop_ratio" else fn(s, bar)
            except Exception as e:  # a failing section is a finding: record it and go on
                got = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc().splitlines()[-6:]}
            got["seconds"] = round(time.time() - t0, 1)
            result["sections"][name] = got
            result["seconds"] = round(time.time() - t_start, 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "sections"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
