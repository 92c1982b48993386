"""How big is Barlow Twins with the method (four 8192-wide projectors), and what does a step need?
`python -m benchmarks.perf.barlowtwins_memory` (writes benchmarks/perf/results/barlowtwins_memory.json)

Counts parameters by part (backbone, stage heads, embeddings, projectors) for the paper-setting
config and the plain baseline, and measures, for the method, the peak memory of one SGD training step
(forward + backward + step, momentum buffers allocated): on a GPU `torch.cuda.max_memory_allocated`,
on a CPU the growth of the process's peak resident set (ru_maxrss) over the state before the step.
Parameters + gradients + momentum alone take 12 bytes per parameter; activations scale with the batch.
"""
from __future__ import annotations

import argparse
import platform
import resource
from pathlib import Path

import torch

from pretrain.config.config import load_config
from pretrain.engine.build import build_model
from pretrain.transforms.augment import PARAM_DIM

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"method": "configs/pretrain/barlowtwins-hier_resnet50_8xb32-coslr-200e_in100.yaml",
           "baseline": "configs/pretrain/barlowtwins_resnet50_8xb32-coslr-200e_in100.yaml"}


def parameter_counts(model) -> dict[str, int]:
    parts: dict[str, int] = {}
    for name, p in model.named_parameters():
        part = name.split(".")[1] if name.startswith("online.") else name.split(".")[0]
        parts[part] = parts.get(part, 0) + p.numel()
    parts["total"] = sum(parts.values())
    return parts


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def step_memory(config: str, batch: int, size: int, device: torch.device) -> dict:
    cfg = load_config(ROOT / config, ["method.batching=view"])
    model = build_model(cfg, device.type).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n_views = 2 * len(model.stages)
    views = [torch.randn(batch, 3, size, size, device=device) for _ in range(n_views)]
    params = [torch.rand(batch, PARAM_DIM, device=device) for _ in range(n_views)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _peak_bytes(device)
    loss, _ = model(views, params)
    loss.backward()
    opt.step()
    peak = _peak_bytes(device)
    return {"parameters": parameter_counts(model), "batch_per_view": batch, "size": size, "views": n_views,
            "peak_bytes_before_step": before, "peak_bytes_after_step": peak, "step_peak_growth_gib": (peak - before) / 2**30,
            "params_grads_momentum_gib": 12 * parameter_counts(model)["total"] / 2**30}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images per view (per process)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/barlowtwins_memory.json")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    res = {"method": step_memory(CONFIGS["method"], args.batch, args.size, device),  # one process: ru_maxrss only grows
           "baseline": {"parameters": parameter_counts(build_model(load_config(ROOT / CONFIGS["baseline"])))}}
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "device": str(device),
                          "torch": torch.__version__, "peak_measure": "cuda max_memory_allocated" if device.type == "cuda"
                          else "process peak RSS (ru_maxrss)"},
              "configs": CONFIGS, **res}
    from pretrain.runs.files import write_json

    write_json(args.out, result)
    r = res["method"]
    print(f"method: {r['parameters']['total'] / 1e6:.1f} M parameters ({r['params_grads_momentum_gib']:.2f} GiB for "
          f"weights+grads+momentum); one step at {args.batch} x {r['views']} views of {args.size} px raised the peak "
          f"by {r['step_peak_growth_gib']:.2f} GiB on {device}; baseline: "
          f"{res['baseline']['parameters']['total'] / 1e6:.1f} M parameters")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
