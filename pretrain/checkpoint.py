"""Checkpoint loads without arbitrary unpickling (`weights_only=True`) and RNG states; the atomic
writers live in `files`."""
from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT = "hier-aug-pretrain"


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
