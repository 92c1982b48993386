"""Segmentation presets: where they live, pointing them at a dataset folder, and adapting them to the
hardware at hand (batch, BN) with every protocol change listed."""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "transfer" / "mmseg"
# where and how a run executes, not what it computes
NOT_PROTOCOL = ("work_dir", "launcher", "randomness", "resume", "load_from", "custom_hooks", "env_cfg", "log_level",
                "default_hooks.logger", "default_hooks.checkpoint", "model.backbone.init_cfg", "protocol")
NOT_PROTOCOL_LEAVES = ("data_root", "num_workers", "persistent_workers")


def resolve_config(name: str) -> Path:
    """A shipped preset by name or a path to an mmengine .py config."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    path = CONFIG_DIR / f"{name.removesuffix('.py')}.py"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
        raise FileNotFoundError(f"no mmseg config {name!r}; shipped presets: {', '.join(shipped)}")
    return path


def _datasets(cfg):
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        ds = cfg[key]["dataset"]
        yield from ds.get("datasets", [ds])


def set_data_root(cfg, root: str | Path) -> None:
    """Every dataset of the config reads from `root` (checked to exist)."""
    root = Path(root).expanduser().resolve()
    for ds in _datasets(cfg):
        ds["data_root"] = str(root)
        ann = ds.get("ann_file")
        if ann and not (root / ann).is_file():
            raise FileNotFoundError(f"{ds['type']}: {root / ann} not found (is --data-root the VOC2012 folder?)")
        img = ds.get("data_prefix", {}).get("img_path")
        if img and not (root / img).is_dir():
            raise FileNotFoundError(f"{ds['type']}: {root / img} not found (is --data-root the dataset folder?)")


def _norms(cfg):
    for part in ("backbone", "decode_head", "auxiliary_head"):
        node = cfg.model.get(part)
        if node and node.get("norm_cfg"):
            yield node["norm_cfg"]


def adapt_to_run(cfg, world_size: int, batch_size: int | None) -> list[str]:
    """Total batch = per-GPU batch x processes; when it differs from the protocol's, the linear scaling
    rule (lr x b/B, iterations, schedule and intervals x B/b). BN instead of SyncBN in one process."""
    ref_world = cfg.get("protocol", {}).get("world_size", 1)
    per_gpu = cfg.train_dataloader.batch_size
    ref_total = per_gpu * ref_world
    total = batch_size or per_gpu * world_size
    if total % world_size:
        raise ValueError(f"--batch-size {total} is not divisible by {world_size} processes")
    cfg.train_dataloader.batch_size = total // world_size
    notes = []
    if total != ref_total:
        notes.append(f"total batch {ref_total} ({ref_world} GPUs x {per_gpu}) -> {total} ({world_size} x {total // world_size}); "
                     "linear scaling rule")
        scale = ref_total / total
        cfg.optim_wrapper.optimizer.lr = cfg.optim_wrapper.optimizer.lr / scale
        cfg.train_cfg.max_iters = round(cfg.train_cfg.max_iters * scale)
        cfg.train_cfg.val_interval = max(1, round(cfg.train_cfg.val_interval * scale))
        for sched in cfg.param_scheduler:
            sched["end"] = round(sched["end"] * scale)
        cfg.default_hooks.checkpoint.interval = max(1, round(cfg.default_hooks.checkpoint.interval * scale))
    if world_size == 1:
        for norm in _norms(cfg):
            if norm["type"] in ("SyncBN", "MMSyncBN"):
                norm["type"] = "BN"
    return notes


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)) and any(isinstance(v, dict) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: obj}


def protocol_changes(preset, cfg) -> list[str]:
    a, b = _flat(preset.to_dict()), _flat(cfg.to_dict())
    keep = lambda k: not k.startswith(NOT_PROTOCOL) and k.rsplit(".", 1)[-1] not in NOT_PROTOCOL_LEAVES
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if keep(k) and a.get(k) != b.get(k)]
