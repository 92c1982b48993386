"""Find the backbone in any supported pretraining checkpoint and prove it is a complete ResNet.

Supported layouts (auto-detected; `detect_layout`):
    hier-aug     this project's checkpoints: `model` with `online.backbone.*`
    moco         MoCo v1/v2 `module.encoder_q.*` (+ `module.encoder_k.*`, queue); MoCo v3 `module.base_encoder.*`
    simsiam      SimSiam/BYOL-style `module.encoder.*` / `encoder.*` / `online_network.*` / `online_encoder.*`
    authors      the paper's released SimSiam code: `module.encoder.*` whose ResNet also holds the
                 intermediate-stage heads (`scala*`, `prepare_attention*`, `attention*`)
    backbone     `backbone.*` (mmselfsup, solo-learn, mmpretrain)
    lightly      lightly's `nn.Sequential(*list(resnet.children())[:-1])` under a prefix: `backbone.0.*` (conv1),
                 `backbone.1.*` (bn1), `backbone.4.*`..`backbone.7.*` (layer1..4)
    dino-teacher DINO's `{"teacher": {"backbone.*"}, "student": {"module.backbone.*"}}`: the teacher (what DINO
                 evaluates) unless the student is asked for (`member`), layout `dino-student`
    vissl        VISSL's `classy_state_dict.base_model.model.trunk._feature_blocks.*` (the heads are dropped)
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

from pretrain.engine.checkpoint import FORMAT as PRETRAIN_FORMAT
from pretrain.engine.checkpoint import load_safe

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
    ("vissl", "_feature_blocks."),
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
        return (f"layout {self.layout} (prefix {self.prefix!r}" + (", DINO's teacher: what DINO evaluates; --member student "
                "for the other" if self.layout == "dino-teacher" else "") + f"), ResNet-{self.depth}, "
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


LIGHTLY_CHILD = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
LIGHTLY_KEY = re.compile(r"^((?:module\.)?backbone\.)(\d)\.(.*)$")
VISSL_PATH = ("classy_state_dict", "base_model", "model", "trunk")
MEMBERS = ("teacher", "student")


def _tensors(d) -> dict[str, torch.Tensor]:
    return {k: v for k, v in d.items() if isinstance(v, torch.Tensor)} if isinstance(d, dict) else {}


def find_state_dict(obj: dict, member: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensor dict inside a checkpoint and its meta: `model`, `state_dict`, `online`, ... or the top level; DINO's
    `teacher` (default) or `student` (`member`; meta["member"]); VISSL's trunk. Nested tensors anywhere else: a
    CheckpointError naming the top-level keys and where the tensors are."""
    meta = {k: obj[k] for k in ("format", "method", "arch", "config") if k in obj}
    if all(_tensors(obj.get(m)) for m in MEMBERS):
        chosen = member or "teacher"
        if chosen not in MEMBERS:
            raise CheckpointError(f"member {chosen!r}: a DINO checkpoint holds {' and '.join(MEMBERS)}")
        return _tensors(obj[chosen]), {**meta, "member": chosen}
    if member:
        raise CheckpointError(f"member {member!r} asked for, but the checkpoint has no teacher/student pair "
                              f"(top-level keys: {', '.join(map(str, list(obj)[:10]))})")
    node = obj
    for key in VISSL_PATH:
        node = node.get(key) if isinstance(node, dict) else None
    if _tensors(node):
        return _tensors(node), {**meta, "vissl": True}
    for key in ("model", "state_dict", "model_state", "network", "online"):
        if _tensors(obj.get(key)):
            return _tensors(obj[key]), meta
    return _tensors(obj), meta


def tensor_paths(obj, path: tuple = (), depth: int = 6) -> list[str]:
    """Where a nested checkpoint holds tensors: 'a -> b (N tensors)' for each dict that holds some."""
    if not isinstance(obj, dict) or depth == 0:
        return []
    here = [f"{' -> '.join(map(str, path)) or '(top level)'} ({len(_tensors(obj))} tensors)"] if _tensors(obj) else []
    return here + [p for k, v in obj.items() if isinstance(v, dict) for p in tensor_paths(v, (*path, k), depth - 1)]


def lightly_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """lightly's Sequential-of-children keys as torchvision's (`backbone.4.0.conv1.weight` -> `backbone.layer1.0.
    conv1.weight`, `backbone.0.weight` -> `backbone.conv1.weight`), or None when `sd` is not in that layout."""
    hits = [m for m in map(LIGHTLY_KEY.match, sd) if m]
    if not hits or {m.group(2) for m in hits} - set(LIGHTLY_CHILD) - {"2", "3", "8"} or "4" not in {m.group(2) for m in hits}:
        return None
    out = {}
    for k, v in sd.items():
        m = LIGHTLY_KEY.match(k)
        out[f"{m.group(1)}{LIGHTLY_CHILD[m.group(2)]}.{m.group(3)}" if m and m.group(2) in LIGHTLY_CHILD else k] = v
    return out


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
    if meta and meta.get("member"):
        layout = f"dino-{meta['member']}"
    if meta and meta.get("vissl"):
        layout = "vissl"
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


def extract_backbone(obj_or_path, member: str | None = None) -> Extraction:
    """The online/query ResNet of a checkpoint (path or loaded dict) as a torchvision state_dict (a DINO
    checkpoint's teacher, or `member`); errors name the file."""
    if not isinstance(obj_or_path, (str, Path)):
        return _extract(obj_or_path, member)
    obj = load_checkpoint_file(obj_or_path)
    try:
        return _extract(obj, member)
    except CheckpointError as e:
        raise CheckpointError(f"{obj_or_path}: {e}") from None


def _extract(obj: dict, member: str | None = None) -> Extraction:
    sd, meta = find_state_dict(obj, member)
    if not sd:
        nested = tensor_paths(obj)
        raise CheckpointError(
            f"no layout this tool knows (top-level keys: {', '.join(map(str, list(obj)[:10]))}); "
            + (f"tensors are nested at: {'; '.join(nested[:5])}: extract that dict and save it as a plain state_dict"
               if nested else "the checkpoint holds no tensors at all"))
    lightly = lightly_keys(sd)
    if lightly is not None:
        sd, meta = lightly, {**meta, "lightly": True}
    layout, prefix = detect_layout(sd, meta)
    if meta.get("lightly"):
        layout = "lightly"
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
    if meta.get("member"):  # the other network of the pair is dropped too
        other = next(m for m in MEMBERS if m != meta["member"])
        dropped[f"DINO {other}"] += len(_tensors(obj[other]))
    return Extraction(out, layout, prefix, depth, dropped, meta)
