"""Checkpoints: loads without arbitrary unpickling (`weights_only=True`), RNG states, and a pretraining run's
state (what `trainer.Pretrainer` saves and resumes from); the atomic writers live in `pretrain.runs.files`."""
from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT = "hier-aug-pretrain"
log = logging.getLogger("pretrain")


def load_safe(path: str | Path, map_location="cpu"):
    """Load a checkpoint without executing pickled code; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing on a plain pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "no message")[:200]
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first}). It may be truncated "
                         "(re-copy it) or not a checkpoint at all. A trusted checkpoint that pickles Python objects must be "
                         "re-saved as a plain state_dict (torch.save(ckpt['state_dict'], ...)).") from None


def rng_state(device: torch.device | None = None) -> dict:
    """The RNG states a resume restores: torch's, numpy's, Python's, and the CUDA state of this process's
    own GPU (`device`; none on a CPU), not every visible GPU's."""
    np_state = np.random.get_state()
    own_gpu = device is not None and device.type == "cuda"
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if own_gpu else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore `rng_state`; the CUDA state goes to this process's GPU, whatever GPUs were visible when it
    was saved (older checkpoints hold one state per visible GPU: this process's own, by its index, or the first)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device is not None and device.type == "cuda":
        cuda = state["cuda"]
        own = cuda[device.index] if len(cuda) > 1 and (device.index or 0) < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(own, device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))


def load_scaler(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Restore loss-scaling state where it exists and applies: an fp16 run's scale into an fp16 run; nothing
    from a bf16/fp32 run (empty state) or into one (the scaler is disabled)."""
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)


def training_state(trainer) -> dict:
    """Everything a resume restores from a `trainer.Pretrainer`: model (online, target, queues), optimizer,
    AMP scaler, step, RNG states, the unreadable images met so far; with the format, method, arch and config."""
    return {
        "format": FORMAT, "method": trainer.model.name, "arch": trainer.cfg["method"]["arch"], "config": trainer.cfg,
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(), "scaler": trainer.scaler.state_dict(),
        "global_step": trainer.global_step, "epoch": trainer.global_step // trainer.steps_per_epoch,
        "steps_per_epoch": trainer.steps_per_epoch, "world_size": trainer.info.world_size, "rng": rng_state(trainer.device),
        "bad_images": trainer.bad_images,
    }


def resume_training(trainer) -> bool:
    """Restore `trainer` from its folder's last.pth (False when there is none); RunConflict when the file is
    another method's or was written with another number of steps per epoch."""
    from pretrain.runs.folder import RunConflict

    path = trainer.out / "last.pth"
    if not path.exists():
        return False
    ck = load_safe(path)
    if ck.get("format") != FORMAT or ck.get("method") != trainer.model.name:
        raise RunConflict(f"{path} is a {ck.get('method')!r} checkpoint of format {ck.get('format')!r}, not a "
                          f"{trainer.model.name!r} run; use another train.output or remove the file")
    if ck["steps_per_epoch"] != trainer.steps_per_epoch:
        raise RunConflict(f"{path} was written with {ck['steps_per_epoch']} steps per epoch, this run has "
                          f"{trainer.steps_per_epoch} (dataset, batch size or process count changed); use a new train.output")
    trainer.model.load_state_dict(ck["model"])
    trainer.optimizer.load_state_dict(ck["optimizer"])
    load_scaler(trainer.scaler, ck["scaler"])
    trainer.global_step = ck["global_step"]
    trainer.bad_images = dict(ck.get("bad_images", {}))
    if ck["world_size"] == trainer.info.world_size:
        set_rng_state(ck["rng"], trainer.device)
    log.info("resumed from %s at step %d (epoch %d)", path, trainer.global_step, ck["epoch"])
    return True
