"""Loading the engines' own checkpoints without unpickling arbitrary objects.

torch.load(weights_only=True) refuses mmengine's resume checkpoints: its message hub pickles history
buffers whose statistics are stored as `getattr(HistoryBuffer, "mean")`, and allowing `getattr` in
general would let a crafted file reach any function. This unpickler allows exactly: tensors and
storages, numpy arrays/scalars/dtypes, OrderedDict, mmengine's HistoryBuffer, and `getattr` on an
allowed class for one of its public methods. Anything else fails with the name of the global.

Use as `torch.load(f, weights_only=False, pickle_module=transfer.safe_pickle)` (see `safe_load`).
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import torch

_SAFE = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
         ("torch", "Size"), ("torch", "device"), ("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
         ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
         ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
         ("mmengine.logging.history_buffer", "HistoryBuffer")}
_CLASSES_WITH_METHODS = {("mmengine.logging.history_buffer", "HistoryBuffer")}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _SAFE:
        return True
    if module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)):
        return True
    return module == "numpy.dtypes" and name.endswith("DType")


def _restricted_getattr(obj, name: str):
    owner = (getattr(obj, "__module__", None), getattr(obj, "__name__", None))
    if owner in _CLASSES_WITH_METHODS and not name.startswith("_") and callable(getattr(obj, name, None)):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"refusing getattr({owner[1]}, {name!r}) in a checkpoint")


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("builtins", "__builtin__") and name == "getattr":
            return _restricted_getattr
        if _allowed(module, name):
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not a type a checkpoint needs "
                                     "(re-save a trusted file as a plain state_dict)")


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()


def safe_load(path: str | Path, map_location="cpu"):
    """torch.load with the restricted unpickler above."""
    import sys

    return torch.load(path, map_location=map_location, weights_only=False, pickle_module=sys.modules[__name__])
