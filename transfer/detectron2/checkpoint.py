"""Loading and saving detection weights safely, reading the weights file once, and proving that the backbone loaded.

* `.pkl` weights are read with the arrays-only unpickler (`transfer.safe_pickle.ARRAYS`; detectron2 itself
  unpickles anything); `.pth` checkpoints go through `torch.load(weights_only=True)`.
* `prepare_weights` reads `--weights` once and returns a `DetectionWeights` record that the run passes
  down; the checkpointer takes the record's content instead of reading the file again.
* Checkpoints are written atomically (temporary file + rename), so a killed run never leaves a
  half-written `model_XXXX.pth` behind `last_checkpoint`.
* `backbone_report` lists every ResNet tensor of the built model and whether the file filled it.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from pretrain.runs.files import save_atomic

from ..convert import D2_AUTHOR
from ..safe_pickle import load_arrays

BACKBONE_TENSOR = re.compile(r"(^|\.)(stem\.conv1|res[2-5]\.\d+\.(conv[1-3]|shortcut))(\.norm)?\.(weight|bias|running_mean|running_var)$")


class WeightsError(ValueError):
    """Weights that do not (fully) load into the backbone; the message names the keys."""


def load_pkl(path: str) -> dict:
    """A detectron2-style `.pkl` ({"model": {name: array}, ...}), unpickling nothing but arrays."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{path}: {'is a folder, not a weights file' if p.is_dir() else 'no such file'}")
    try:
        data = load_arrays(p)
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path}: not a readable detectron2 .pkl ({type(e).__name__}: {str(e)[:160] or 'empty or truncated'}); "
                           "re-copy it, or convert a pretraining checkpoint with tools/convert_to_d2.py") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: holds a {type(data).__name__}, not a dict of arrays")
    return data


def as_checkpoint(data: dict) -> dict:
    """A loaded `.pkl` as detectron2's checkpointer takes it: ours and MoCo's as they are (they carry
    `__author__` and `matching_heuristics`); caffe2 blobs without their momentum buffers, with heuristics."""
    if "model" in data and "__author__" in data:
        return data
    blobs = {k: v for k, v in data.get("blobs", data).items() if not k.endswith("_momentum")}
    return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}


@dataclass
class DetectionWeights:
    """The weights of a detection run, read once: MODEL.WEIGHTS (`value`; "" random init, None the preset's
    own), where they came from, their input format (torchvision / caffe2 / None unknown), depth, this
    project's converted arrays (the load report then compares every value) or None, and the content the
    checkpointer loads (`checkpoint`; None: detectron2 reads `value` itself, e.g. a detectron2:// URL)."""

    value: str | None
    source: dict
    format: str | None = None
    depth: int | None = None
    arrays: dict | None = None
    checkpoint: dict | None = None
    _converted: object = None  # a pretraining checkpoint's extraction, written to `value` by `write`

    def write(self) -> None:
        """Write the converted .pkl (once the run folder is claimed); nothing for weights given as files."""
        if self._converted is not None:
            from ..convert import write_detectron2_pkl

            write_detectron2_pkl(self._converted, self.value, self.arrays)
            print(f"[convert] {self.source['source']}: {self._converted.summary()} -> {self.value}")

    def check_depth(self, cfg) -> None:
        """The weights' ResNet depth is the one the config builds; else WeightsError with the overrides to pass."""
        if self.depth and self.depth != cfg.MODEL.RESNETS.DEPTH:
            extra = " MODEL.RESNETS.RES2_OUT_CHANNELS 64" if self.depth in (18, 34) else ""
            raise WeightsError(f"{self.source['source']} is a ResNet-{self.depth} but the config builds ResNet-"
                               f"{cfg.MODEL.RESNETS.DEPTH}: pass MODEL.RESNETS.DEPTH {self.depth}{extra} (C4 heads need "
                               "depth >= 50) or other weights")


def prepare_weights(weights: str, out: Path) -> DetectionWeights:
    """`--weights` as detectron2 takes it: a `.pkl` is read (arrays only), a raw checkpoint or torchvision
    state_dict is converted in memory (written to out/weights_d2.pkl by `write`), `random`/`config` are symbolic."""
    from ..convert import detectron2_doc, to_detectron2
    from ..weights import extract_backbone

    if weights in ("", "random"):
        return DetectionWeights("", {"source": "random init", "layout": "random"})
    if weights == "config":
        return DetectionWeights(None, {"source": "the preset's MODEL.WEIGHTS", "layout": "preset"})
    if weights.startswith("detectron2://"):
        fmt = "caffe2" if weights.startswith("detectron2://ImageNetPretrained/MSRA") else None
        return DetectionWeights(weights, {"source": weights, "layout": "detectron2 .pkl"}, fmt)
    if weights.endswith(".pkl"):
        data = load_pkl(weights)
        author = str(data.get("__author__", ""))
        ours = author.startswith(D2_AUTHOR)
        names = data.get("model", data.get("blobs", data))
        fmt = ("torchvision" if ours or author.startswith("MOCO") else
               "caffe2" if isinstance(names, dict) and any(str(k).endswith("_branch2a_w") for k in names) else None)
        return DetectionWeights(weights, {"source": weights, "layout": "detectron2 .pkl"}, fmt, data.get("depth"),
                                data["model"] if ours else None, as_checkpoint(data))
    ex = extract_backbone(weights)
    target = out / "weights_d2.pkl"
    arrays = to_detectron2(ex)
    return DetectionWeights(str(target), {"source": weights, "layout": ex.layout, "depth": ex.depth, "dropped": dict(ex.dropped),
                                          "converted": str(target)}, "torchvision", ex.depth, arrays, detectron2_doc(ex, arrays), ex)


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with array-only `.pkl` reading, weights-only `.pth` loading, atomic
    saving, and the incompatible keys of the last load kept in `self.incompatible`. `preloaded`
    ({path: checkpoint content}, set by `use`) is taken instead of reading that file again."""

    incompatible = None
    preloaded: dict[str, dict] = {}

    @classmethod
    def use(cls, weights: DetectionWeights) -> None:
        """Load `weights.value` from the record's content in this process (no second read of the file)."""
        cls.preloaded = {weights.value: weights.checkpoint} if weights.checkpoint is not None else {}

    def _load_file(self, filename):
        if filename in self.preloaded:  # detectron2 pops and converts `model` in place: hand it copies
            content = self.preloaded[filename]
            return {**content, "model": dict(content["model"])}
        if filename.endswith(".pkl"):
            return as_checkpoint(load_pkl(filename))
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
