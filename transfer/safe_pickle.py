"""Reading pickled weights and checkpoints without unpickling arbitrary objects: one unpickler, two allow-lists.

    ARRAYS      numpy arrays/scalars/dtypes and OrderedDict: a detectron2 `.pkl` ({"model": {name: array}})
    CHECKPOINT  ARRAYS + tensors and storages + mmengine's HistoryBuffer: mmengine's resume checkpoints

torch.load(weights_only=True) refuses mmengine's resume checkpoints: its message hub pickles history
buffers whose statistics are stored as `getattr(HistoryBuffer, "mean")`, and allowing `getattr` in
general would let a crafted file reach any function. With CHECKPOINT, `getattr` is allowed only on an
allowed class for one of its public methods. Anything else fails with the name of the global.
"""
from __future__ import annotations

import importlib
import io
import pickle
import sys
from pathlib import Path

import torch

ARRAYS = frozenset({("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
                    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")})
CHECKPOINT = ARRAYS | {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"), ("torch", "Size"),
                       ("torch", "device"), ("_codecs", "encode"), ("mmengine.logging.history_buffer", "HistoryBuffer")}
_CLASSES_WITH_METHODS = {("mmengine.logging.history_buffer", "HistoryBuffer")}


def _allowed(module: str, name: str, allow: frozenset) -> bool:
    if (module, name) in allow:
        return True
    if allow is ARRAYS:
        return module == "numpy.dtypes" and name.endswith("DType")
    if module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)):
        return True
    return module == "numpy.dtypes" and name.endswith("DType")


def _restricted_getattr(obj, name: str):
    owner = (getattr(obj, "__module__", None), getattr(obj, "__name__", None))
    if owner in _CLASSES_WITH_METHODS and not name.startswith("_") and callable(getattr(obj, name, None)):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"refusing getattr({owner[1]}, {name!r}) in a checkpoint")


class Unpickler(pickle.Unpickler):
    """pickle.Unpickler that rebuilds only the globals of `allow` (CHECKPOINT by default)."""

    def __init__(self, file, *, allow: frozenset = CHECKPOINT, **kwargs):
        super().__init__(file, **kwargs)
        self.allow = allow

    def find_class(self, module, name):
        if self.allow is CHECKPOINT and module in ("builtins", "__builtin__") and name == "getattr":
            return _restricted_getattr
        if _allowed(module, name, self.allow):
            return getattr(importlib.import_module(module), name)
        what = "a weights .pkl holds only numpy arrays" if self.allow is ARRAYS else "not a type a checkpoint needs"
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: {what} (re-save a trusted file as a plain "
                                     "state_dict)")


def load(file, **kwargs):
    """The `pickle_module.load` torch.load calls (CHECKPOINT allow-list)."""
    return Unpickler(file, **kwargs).load()


def safe_load(path: str | Path, map_location="cpu"):
    """torch.load of an mmengine-style checkpoint with the CHECKPOINT allow-list."""
    return torch.load(path, map_location=map_location, weights_only=False, pickle_module=sys.modules[__name__])


def load_arrays(path: str | Path):
    """A plain pickle of arrays and containers (a detectron2 `.pkl`), read with the ARRAYS allow-list;
    pickle errors (UnpicklingError, EOFError, ...) propagate to the caller, which names the file."""
    with open(path, "rb") as f:
        return Unpickler(io.BytesIO(f.read()), allow=ARRAYS, encoding="latin1").load()
