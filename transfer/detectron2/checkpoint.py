"""Loading and saving detection weights safely, and proving that the backbone loaded.

* `.pkl` weights are read with an unpickler that only rebuilds numpy arrays and plain containers
  (detectron2 itself unpickles anything); `.pth` checkpoints go through `torch.load(weights_only=True)`.
* Checkpoints are written atomically (temporary file + rename), so a killed run never leaves a
  half-written `model_XXXX.pth` behind `last_checkpoint`.
* `backbone_report` lists every ResNet tensor of the built model and whether the file filled it.
"""
from __future__ import annotations

import io
import os
import pickle
import re

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from pretrain.checkpoint import save_atomic

BACKBONE_TENSOR = re.compile(r"(^|\.)(stem\.conv1|res[2-5]\.\d+\.(conv[1-3]|shortcut))(\.norm)?\.(weight|bias|running_mean|running_var)$")
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}


class WeightsError(ValueError):
    """Weights that do not (fully) load into the backbone; the message names the keys."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: a weights .pkl holds only numpy arrays")


def load_pkl(path: str) -> dict:
    """A detectron2-style `.pkl` ({"model": {name: array}, ...}), unpickling nothing but arrays."""
    with open(path, "rb") as f:
        data = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: holds a {type(data).__name__}, not a dict of arrays")
    return data


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with array-only `.pkl` reading, weights-only `.pth` loading, atomic
    saving, and the incompatible keys of the last load kept in `self.incompatible`."""

    incompatible = None

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            data = load_pkl(filename)
            if "model" in data and "__author__" in data:
                return data
            blobs = {k: v for k, v in data.get("blobs", data).items() if not k.endswith("_momentum")}
            return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
        return super()._load_file(filename)

    def _torch_load(self, f):
        return torch.load(f, map_location="cpu", weights_only=True)

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), **{k: obj.state_dict() for k, obj in self.checkpointables.items()}, **kwargs}
        basename = f"{name}.pth"
        save_atomic(data, os.path.join(self.save_dir, basename))
        self.logger.info(f"Saved checkpoint {os.path.join(self.save_dir, basename)}")
        self.tag_last_checkpoint(basename)


def backbone_report(model: torch.nn.Module, incompatible, source: dict[str, np.ndarray] | None) -> dict:
    """Which ResNet tensors of `model` the load filled. With `source` (our converted .pkl) every value
    is compared with the file, so 'loaded' means bit-identical, not merely 'no warning'."""
    state = model.state_dict()
    backbone = sorted(k for k in state if BACKBONE_TENSOR.search(k))
    missing = sorted(k for k in (incompatible.missing_keys if incompatible else []) if BACKBONE_TENSOR.search(k))
    unexpected = sorted(k for k in (incompatible.unexpected_keys if incompatible else []) if BACKBONE_TENSOR.search(k))
    shapes = [k for k, *_ in (incompatible.incorrect_shapes if incompatible else []) if BACKBONE_TENSOR.search(k)]
    report = {"backbone_tensors": len(backbone), "missing": missing, "unexpected": unexpected, "wrong_shape": shapes}
    if source is not None:
        by_suffix = {}
        for name in source:
            hits = [k for k in backbone if k == name or k.endswith("." + name)]
            if len(hits) == 1:
                by_suffix[hits[0]] = name
        differ = [k for k in backbone if k not in by_suffix
                  or not np.array_equal(state[k].detach().cpu().numpy(), np.asarray(source[by_suffix[k]]))]
        unused = sorted(set(n for n in source if not n.endswith("num_batches_tracked")) - set(by_suffix.values()))
        report.update(verified_identical=len(backbone) - len(differ), not_identical=differ, unused_in_file=unused)
    report["loaded"] = report.get("verified_identical", len(backbone) - len(missing) - len(shapes))
    report["ok"] = not (missing or unexpected or shapes or report.get("not_identical") or report.get("unused_in_file"))
    return report


def check_report(report: dict, weights: str) -> None:
    """Raise WeightsError unless every backbone tensor loaded and nothing was left over."""
    if report["ok"]:
        return
    parts = [f"{key}: {report[key][:5]}{' ...' if len(report[key]) > 5 else ''}"
             for key in ("missing", "unexpected", "wrong_shape", "not_identical", "unused_in_file") if report.get(key)]
    raise WeightsError(f"{weights}: the backbone did not load completely ({report['loaded']}/{report['backbone_tensors']} "
                       f"tensors); " + "; ".join(parts))
