"""Find the backbone in any supported pretraining checkpoint and prove it is a complete ResNet.

Supported layouts (auto-detected; `detect_layout`):
    hier-aug     this project's checkpoints: `model` with `online.backbone.*`
    moco         MoCo v1/v2 `module.encoder_q.*` (+ `module.encoder_k.*`, queue); MoCo v3 `module.base_encoder.*`
    simsiam      SimSiam/BYOL-style `module.encoder.*` / `encoder.*` / `online_network.*` / `online_encoder.*`
    authors      the paper's released SimSiam code: `module.encoder.*` whose ResNet also holds the
                 intermediate-stage heads (`scala*`, `prepare_attention*`, `attention*`)
    backbone     `backbone.*` (mmselfsup, solo-learn, lightly, mmpretrain)
    torchvision  a plain torchvision ResNet state_dict (`conv1.weight`, `layer1.*`, `fc.*`)
Everything that is not the query/online backbone is dropped explicitly and counted by kind.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision import models

from pretrain.checkpoint import FORMAT as PRETRAIN_FORMAT
from pretrain.checkpoint import load_safe

BACKBONE_KEY = re.compile(
    r"^(conv1\.weight|bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)|"
    r"layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.\w+|downsample\.[01]\.\w+))$")
# (layout, prefix) candidates in order of preference for equal coverage
PREFIXES = (
    ("hier-aug", "online.backbone."),
    ("moco", "module.encoder_q."), ("moco", "encoder_q."),
    ("moco", "module.base_encoder."), ("moco", "base_encoder."),
    ("simsiam", "module.encoder."), ("simsiam", "encoder."),
    ("simsiam", "module.online_network.encoder."), ("simsiam", "online_network.encoder."),
    ("simsiam", "module.online_network."), ("simsiam", "online_network."),
    ("simsiam", "module.online_encoder.net."), ("simsiam", "online_encoder.net."),
    ("simsiam", "module.online_encoder."), ("simsiam", "online_encoder."),
    ("backbone", "module.backbone."), ("backbone", "backbone."),
    ("torchvision", "module."), ("torchvision", ""),
)
AUTHORS_HEADS = re.compile(r"^(scala\d|prepare_attention\d|attention\d)\.")
DROP_KINDS = (  # (kind, pattern on the full key) in order; first match wins
    ("momentum/target encoder", re.compile(r"(encoder_k|momentum_encoder|momentum_backbone|target|teacher|ema)", re.I)),
    ("queue", re.compile(r"queue")),
    ("intermediate-stage heads", re.compile(r"(online\.heads\.|scala\d|prepare_attention\d|(^|\.)attention\d)")),
    ("augmentation embedding", re.compile(r"(embeds\.|color_enc|crop_enc|aug_emb)")),
    ("predictor", re.compile(r"predictor")),
    ("projector/head", re.compile(r"(projector|projection|neck|head|\.fc\.|^fc\.|standardize|classifier|mlp)")),
)
DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34,
          ("bottleneck", (3, 4, 6, 3)): 50, ("bottleneck", (3, 4, 23, 3)): 101}


class CheckpointError(ValueError):
    """A checkpoint that cannot give a complete ResNet backbone; the message says why and what to do."""


@dataclass
class Extraction:
    state_dict: dict[str, torch.Tensor]  # torchvision ResNet keys, without fc
    layout: str
    prefix: str
    depth: int
    dropped: Counter = field(default_factory=Counter)
    meta: dict = field(default_factory=dict)  # method/arch/config of this project's checkpoints

    def summary(self) -> str:
        drops = ", ".join(f"{n} {k}" for k, n in sorted(self.dropped.items())) or "nothing"
        return (f"layout {self.layout} (prefix {self.prefix!r}), ResNet-{self.depth}, "
                f"{len(self.state_dict)} backbone tensors; dropped {sum(self.dropped.values())} tensors: {drops}")


def load_checkpoint_file(path: str | Path) -> dict:
    """torch.load with weights_only=True; clear errors for missing, empty, truncated or foreign files."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file inside it (e.g. {path}/last.pth)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes): an interrupted copy or save; re-copy it")
    try:
        obj = load_safe(path)
    except ValueError as e:
        if _is_detectron2_pkl(path):
            raise CheckpointError(
                f"{path}: a detectron2 .pkl (converted weights), not a PyTorch checkpoint: detection tasks take it as "
                "--weights directly; for the other tasks and tools give the pretraining checkpoint (or the output of "
                "tools/extract_backbone.py)") from None
        raise CheckpointError(str(e)) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def _is_detectron2_pkl(path: Path) -> bool:
    """A plain pickle (not torch's zip format) whose arrays-only reading succeeds with a `model` dict."""
    import pickle

    if path.read_bytes()[:2] == b"PK":
        return False
    try:
        from .safe_pickle import load_arrays

        data = load_arrays(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return False
    return isinstance(data, dict) and isinstance(data.get("model", data.get("blobs")), dict)


def find_state_dict(obj: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensor dict inside a checkpoint (`model`, `state_dict`, `online`, or the top level) and its meta."""
    meta = {k: obj[k] for k in ("format", "method", "arch", "config") if k in obj}
    for key in ("model", "state_dict", "model_state", "network", "online"):
        if isinstance(obj.get(key), dict) and any(isinstance(v, torch.Tensor) for v in obj[key].values()):
            return {k: v for k, v in obj[key].items() if isinstance(v, torch.Tensor)}, meta
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors, meta


def detect_layout(sd: dict[str, torch.Tensor], meta: dict | None = None) -> tuple[str, str]:
    """(layout, prefix) whose stripped keys cover the most ResNet backbone tensors."""
    best, best_n = None, 0
    for layout, prefix in PREFIXES:
        n = sum(1 for k in sd if k.startswith(prefix) and BACKBONE_KEY.match(k[len(prefix):]))
        if n > best_n:
            best, best_n = (layout, prefix), n
    if best is None:
        sample = ", ".join(list(sd)[:6])
        raise CheckpointError(f"no ResNet backbone found (no key looks like conv1.weight / layerN.M.convK.weight "
                              f"under a known prefix); first keys: {sample}")
    layout, prefix = best
    if layout == "simsiam" and any(AUTHORS_HEADS.match(k[len(prefix):]) for k in sd if k.startswith(prefix)):
        layout = "authors"
    if meta and meta.get("format") == PRETRAIN_FORMAT:
        layout = "hier-aug"
    return layout, prefix


def _depth(sd: dict[str, torch.Tensor]) -> int:
    kind = "bottleneck" if any(".conv3." in k for k in sd) else "basic"
    blocks = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    if (kind, blocks) not in DEPTHS:
        raise CheckpointError(f"the backbone has {kind} blocks {blocks} per stage: not a ResNet-18/34/50/101 "
                              "(a truncated or partial checkpoint?)")
    return DEPTHS[(kind, blocks)]


def reference_state_dict(depth: int) -> dict[str, torch.Tensor]:
    """The keys and shapes of a torchvision ResNet-`depth` backbone (without fc)."""
    net = getattr(models, f"resnet{depth}")(weights=None)
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def check_coverage(sd: dict[str, torch.Tensor], depth: int) -> None:
    """Every backbone tensor present with the right shape, nothing left over; else CheckpointError."""
    ref = reference_state_dict(depth)
    missing = sorted(set(ref) - set(sd))
    unexpected = sorted(set(sd) - set(ref))
    bad = sorted(k for k in set(ref) & set(sd) if tuple(ref[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:5])})")
        if bad:
            parts.append("wrong shapes: " + ", ".join(f"{k} {tuple(sd[k].shape)} != {tuple(ref[k].shape)}" for k in bad[:5]))
        raise CheckpointError(f"incomplete ResNet-{depth} backbone: " + "; ".join(parts))


def _drop_kind(key: str) -> str:
    for kind, pat in DROP_KINDS:
        if pat.search(key):
            return kind
    return "other"


def extract_backbone(obj_or_path) -> Extraction:
    """The online/query ResNet of a checkpoint (path or loaded dict) as a torchvision state_dict; errors
    name the file."""
    if not isinstance(obj_or_path, (str, Path)):
        return _extract(obj_or_path)
    obj = load_checkpoint_file(obj_or_path)
    try:
        return _extract(obj)
    except CheckpointError as e:
        raise CheckpointError(f"{obj_or_path}: {e}") from None


def _extract(obj: dict) -> Extraction:
    sd, meta = find_state_dict(obj)
    if not sd:
        raise CheckpointError("the checkpoint holds no tensors (expected a state_dict under 'model' or 'state_dict')")
    layout, prefix = detect_layout(sd, meta)
    out: dict[str, torch.Tensor] = {}
    dropped: Counter = Counter()
    for k, v in sd.items():
        inner = k[len(prefix):] if k.startswith(prefix) else None
        if inner is not None and BACKBONE_KEY.match(inner):
            out[inner] = v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
        else:
            dropped[_drop_kind(k)] += 1
    depth = _depth(out)
    check_coverage(out, depth)
    return Extraction(out, layout, prefix, depth, dropped, meta)
