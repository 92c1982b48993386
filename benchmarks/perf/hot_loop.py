"""The pretraining hot loop's overheads that a GPU pays and a CPU hides, counted and timed on any machine:

    python -m benchmarks.perf.hot_loop [--label after] [--out benchmarks/perf/results/hot_loop.json]

  host reads per step   calls that make the host wait for a device value (`.item()`, `float()`, `bool()`,
                        `.tolist()`, `nonzero`), by the source line in `pretrain/` that made them, inside
                        the training step of SimSiam + method (augment.device train, shared batching)
                        and at one flush of the step log; on a GPU each is a stall of the pipeline
  EMA update            BYOL + method, ResNet-50 (the target network's update per step): milliseconds
                        and torch calls (kernel launches on a GPU)
  LARS step             the same model's parameters with random gradients: milliseconds and torch calls
  SyncBN saved bytes    what one per-view synchronised BatchNorm call (`dist.sync_batch_norm`, 4 views, bf16
                        input) keeps for backward, per byte of its input (saved-tensor hooks; a one-process
                        gloo group: the bytes do not depend on the process count)

The script only uses the public entry points (`Pretrainer.step`, `update_target`, `optimizer.step`), so
running it on an older checkout measures "before": results are kept per --label in one JSON file.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from tqdm import tqdm

from pretrain.config.config import load_config
from pretrain.engine.build import build_model
from pretrain.engine.optim import build_optimizer

from .augment_throughput import ROOT, write_jpegs

HOST_READS = {"item", "__float__", "__int__", "__bool__", "tolist", "nonzero", "numpy", "__index__"}
NO_KERNEL = {"__get__", "_set_grad_enabled"}


class HostReads(TorchFunctionMode):
    """Counts host reads of tensor values by the `pretrain/` function that made them (comprehensions and
    lambdas count for their enclosing function); what `torch.cuda.set_sync_debug_mode` reports on a GPU."""

    def __init__(self):
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            f = sys._getframe(1)
            while f and ("/pretrain/" not in f.f_code.co_filename or f.f_code.co_name.startswith("<")):
                f = f.f_back
            if f:
                self.sites[f"{os.path.basename(f.f_code.co_filename)}:{f.f_code.co_name}"] += 1
        return func(*args, **(kwargs or {}))


class TorchCalls(TorchFunctionMode):
    """Counts torch operations called from Python: one kernel launch each on a GPU (a fused `_foreach_*`
    call is one multi-tensor launch); attribute reads launch nothing and are not counted."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name not in NO_KERNEL and not name.startswith("_record_function"):
            self.n += 1
        return func(*args, **(kwargs or {}))


def host_reads(data: Path, out: Path, steps: int = 4) -> dict:
    from pretrain.engine.trainer import Pretrainer

    cfg = load_config(ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                      ["optim.batch_size=8", "augment.size=64", "data.workers=0", "augment.device=train",
                       "method.batching=shared", f"train.log_every={steps}", f"train.max_steps={steps}",
                       f"data.train={data}", f"train.output={out}"])
    t = Pretrainer(cfg)
    reads, step = HostReads(), t.step

    def counted(views, params):
        with reads:
            return step(views, params)

    t.step = counted
    t.run()
    per_step = {site: n / steps for site, n in sorted(reads.sites.items())}
    return {"steps": steps, "per_step": per_step, "per_step_total": sum(per_step.values()),
            "on_device_per_step": sum(v for k, v in per_step.items() if k != "photometric.py:index_plan")}


def _median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2)


def updates(reps: int) -> dict:
    cfg = load_config(ROOT / "configs/pretrain/byol-hier_resnet50_8xb32-coslr-200e_in100.yaml", ["optim.name=lars"])
    torch.manual_seed(0)
    model = build_model(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = build_optimizer(model, cfg, 0.1)
    calls = {}
    for name, fn in (("ema", model.update_target), ("lars", opt.step)):
        fn()
        counter = TorchCalls()
        with counter:
            fn()
        calls[name] = counter.n
    return {"parameters": len(params), "ema_ms": _median_ms(model.update_target, reps), "ema_torch_calls": calls["ema"],
            "lars_ms": _median_ms(opt.step, reps), "lars_torch_calls": calls["lars"]}


def syncbn_saved(tmp: Path) -> dict:
    """Bytes saved for backward by one `sync_batch_norm` call on a bf16 (4·32, 64, 28, 28) input, and per input byte."""
    import torch.distributed as dist
    from torch import nn

    from pretrain.distributed.syncbn import sync_batch_norm

    dist.init_process_group("gloo", init_method=f"file://{tmp / 'store'}", rank=0, world_size=1)
    try:
        bn = nn.BatchNorm2d(64)
        x = torch.randn(4 * 32, 64, 28, 28).to(torch.bfloat16).requires_grad_()
        saved: list[int] = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sync_batch_norm(bn, x, (0, 1, 2, 3))
    finally:
        dist.destroy_process_group()
    input_bytes = x.numel() * x.element_size()
    return {"input_bytes": input_bytes, "saved_bytes": sum(saved), "saved_per_input_byte": round(sum(saved) / input_bytes, 3)}


def git_commit() -> str:
    """The short commit, "+changes" when the working tree differs from it."""
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return (r.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", default="current", help="name of this measurement in the JSON (e.g. before, after)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/hot_loop.json")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data/cls"
        data.mkdir(parents=True)
        write_jpegs(data, 16, size=(96, 96))
        with tqdm(total=3, desc="hot loop", unit="part") as bar:
            reads = host_reads(data.parent, Path(tmp) / "run")
            bar.update(1)
            upd = updates(args.reps)
            bar.update(1)
            bn = syncbn_saved(Path(tmp))
            bar.update(1)
    result = {"git": git_commit(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "host_reads": reads, "updates": upd, "syncbn_saved": bn}
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({args.label: result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
