"""Everything a pretraining run decides about where and how it runs, resolved once from the config and the
machine, applied to torch's backends, and written with the run (config.yaml, pretrain_summary.json).

`auto` values are resolved here and nowhere else: the device, the batching mode, where the photometric
augmentations run, the autocast dtype; plus the process-group backend, TF32 and cuDNN autotuning.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch

from pretrain.config.config import ConfigError
from pretrain.distributed.launch import DistInfo, cuda_device
from pretrain.engine.build import resolve_augment_device, resolve_batching


def device_type(cfg: dict) -> str:
    """train.device resolved: "cuda" or "cpu" (auto: cuda when a GPU is visible)."""
    want = cfg["train"]["device"]
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no GPU is visible (torch.cuda.is_available() is False); "
                          "use train.device=cpu or auto")
    return want


def resolve_device(cfg: dict, info: DistInfo) -> torch.device:
    """This process's training device: its GPU (`pretrain.distributed.launch.cuda_device`) or the CPU."""
    return cuda_device(info.local_rank) if device_type(cfg) == "cuda" else torch.device("cpu")


def amp_dtype(cfg: dict, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 where the GPU computes it natively (Ampere and later), fp16 (with loss scaling)
    on older GPUs, where bf16 would be emulated slowly (V100, T4); None on a CPU or with train.amp off."""
    if not (cfg["train"]["amp"] and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


@dataclass(frozen=True)
class Runtime:
    """The resolved run-time choices of one process (the same on every process of a run)."""

    device: torch.device
    batching: str            # view | pair | shared
    augment_device: str      # loader | train
    amp_dtype: torch.dtype | None
    backend: str | None      # nccl | gloo | None (one process)
    world_size: int
    tf32_matmul: bool        # TF32 for fp32 matrix products (off by default: the losses are computed in fp32)
    tf32_conv: bool          # TF32 for fp32 cuDNN convolutions (PyTorch's default, on)
    cudnn_benchmark: bool    # cuDNN autotuning: the input sizes are fixed, so it pays after the first steps

    def record(self) -> dict:
        """JSON-able values, as written to pretrain_summary.json."""
        d = asdict(self)
        d["device"] = self.device.type
        d["amp_dtype"] = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else None
        return d

    def resolved_config(self, cfg: dict) -> dict:
        """`cfg` with its `auto` values replaced by what this run chose (the saved config.yaml)."""
        out = copy.deepcopy(cfg)
        out["train"]["device"] = self.device.type
        out["method"]["batching"] = self.batching
        out["augment"]["device"] = self.augment_device
        return out

    def apply(self) -> None:
        """Set torch's backend flags for this run (they matter on a GPU only)."""
        torch.backends.cuda.matmul.allow_tf32 = self.tf32_matmul
        torch.backends.cudnn.allow_tf32 = self.tf32_conv
        torch.backends.cudnn.benchmark = self.cudnn_benchmark


def resolve_runtime(cfg: dict, info: DistInfo = DistInfo()) -> Runtime:
    device = resolve_device(cfg, info)
    gpu = device.type == "cuda"
    t = cfg["train"]
    return Runtime(device=device, batching=resolve_batching(cfg, device.type),
                   augment_device=resolve_augment_device(cfg, device.type), amp_dtype=amp_dtype(cfg, device),
                   backend=("nccl" if gpu else "gloo") if info.enabled else None, world_size=info.world_size,
                   tf32_matmul=gpu and t["tf32_matmul"], tf32_conv=gpu and t["tf32_conv"],
                   cudnn_benchmark=gpu and t["cudnn_benchmark"])
