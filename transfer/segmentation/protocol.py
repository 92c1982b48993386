"""Segmentation presets: where they live, pointing them at a dataset folder, and adapting them to the
hardware at hand (batch, BN) with every protocol change listed."""
from __future__ import annotations

from pathlib import Path

from pretrain.config.shipped import configs_dir

from ..convert import PIXEL_MEAN, PIXEL_STD  # torchvision's ImageNet mean/std x 255
from ..protocol import changed_keys, flatten, input_mismatch, resolve_preset
from ..tasks import TASKS

CONFIG_DIR = configs_dir() / "transfer" / "mmseg"
# where and how a run executes, not what it computes
NOT_PROTOCOL = ("work_dir", "launcher", "randomness", "resume", "load_from", "custom_hooks", "env_cfg", "log_level",
                "default_hooks.logger", "default_hooks.checkpoint", "model.backbone.init_cfg", "protocol")
NOT_PROTOCOL_LEAVES = ("data_root", "num_workers", "persistent_workers")


def resolve_config(name: str) -> Path:
    """A shipped preset by name or a path to an mmengine .py config."""
    return resolve_preset(name, CONFIG_DIR, (".py",), "mmseg")


def datasets_of(cfg):
    """Every dataset dict of the train/val/test loaders (the members of concatenated ones)."""
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        ds = cfg[key]["dataset"]
        yield from ds.get("datasets", [ds])


def set_data_root(cfg, root: str | Path) -> None:
    """Every dataset of the config reads from `root` (checked to exist)."""
    root = Path(root).expanduser().resolve()
    for ds in datasets_of(cfg):
        ds["data_root"] = str(root)
        ann = ds.get("ann_file")
        if ann and not (root / ann).is_file():
            raise FileNotFoundError(f"{ds['type']}: {root / ann} not found (is --data-root the VOC2012 folder?)")
        img = ds.get("data_prefix", {}).get("img_path")
        if img and not (root / img).is_dir():
            raise FileNotFoundError(f"{ds['type']}: {root / img} not found (is --data-root the dataset folder?)")


def _reads(path: Path) -> str | None:
    """The one dataset type a preset file reads (None: several)."""
    from mmengine.config import Config

    types = {ds.get("type") for ds in datasets_of(Config.fromfile(str(path)))}
    return types.pop() if len(types) == 1 else None


def check_task(task: str, cfg, name: str) -> None:
    """Every dataset of the preset is the task's `dataset_type` (transfer/tasks.py)."""
    types = sorted({ds.get("type") for ds in datasets_of(cfg)})
    if types != [TASKS[task].dataset_type]:
        fits = [t.name for t in TASKS.values() if t.dataset_type and types == [t.dataset_type]]
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if _reads(p) == TASKS[task].dataset_type)
        raise ValueError(f"{name} reads {', '.join(map(str, types))}: a preset for {fits[0] if fits else 'another task'}, "
                         f"not {task}; pass --config with a {task} preset ({', '.join(shipped)})")


def check_overrides(cfg, options: dict) -> None:
    """Every --cfg-options key names an existing key of the config (list items by index); else ValueError
    with the keys that exist there."""
    tree = cfg.to_dict()
    for key in options:
        node, path = tree, []
        for part in key.split("."):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                known = (f"{len(node)} items (0..{len(node) - 1})" if isinstance(node, (list, tuple)) else
                         ", ".join(sorted(map(str, node))) if isinstance(node, dict) else f"a value ({node!r:.60})")
                raise ValueError(f"--cfg-options {key}: no key {part!r} in {'.'.join(path) or 'the config'}, which holds "
                                 f"{known}")
            path.append(part)


def check_numbers(cfg) -> None:
    """Schedule values in range: iterations, intervals and the batch >= 1, lr > 0."""
    values = {"train_cfg.max_iters": cfg.train_cfg.max_iters, "train_cfg.val_interval": cfg.train_cfg.val_interval,
              "train_dataloader.batch_size": cfg.train_dataloader.batch_size,
              "default_hooks.checkpoint.interval": cfg.default_hooks.checkpoint.interval}
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{key}={v!r} is out of range: must be an integer >= 1")
    lr = cfg.optim_wrapper.optimizer.lr
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"optim_wrapper.optimizer.lr={lr!r} is out of range: must be > 0")


def identity_config(cfg) -> dict:
    """The result-deciding keys of a config (preset + overrides, before the per-process adaptation): {key: value}."""
    return {k: v for k, v in flatten(cfg.to_dict()).items() if _is_protocol(k)}


def _norms(cfg):
    for part in ("backbone", "decode_head", "auxiliary_head"):
        node = cfg.model.get(part)
        if node and node.get("norm_cfg"):
            yield f"model.{part}.norm_cfg.type", node["norm_cfg"]


def adapt_to_run(cfg, preset, world_size: int, batch_size: int | None = None,
                 accumulate: bool = False) -> tuple[list[str], list[str]]:
    """Fit the preset to `world_size` processes: (protocol changes, equivalent changes).

    The preset's total batch (per-GPU batch x its `protocol.world_size`) is kept: per-process batch =
    total / processes. Another total, from `batch_size` or a `train_dataloader.batch_size` override
    (per process), is derived from the preset's values by the linear scaling rule (lr and the PolyLR
    floor x b/B; iterations, schedule, validation and checkpoint intervals x B/b) or, with `accumulate`,
    by gradient accumulation over B/b micro-batches (lr unchanged; iterations count micro-batches).
    In one process SyncBN becomes BN; with the whole total batch there, the statistics are the same
    (an equivalent change)."""
    ref_world = preset.get("protocol", {}).get("world_size", 1)
    ref_per = preset.train_dataloader.batch_size
    ref_total = ref_per * ref_world
    per_override = cfg.train_dataloader.batch_size
    total = batch_size or (per_override * world_size if per_override != ref_per else ref_total)
    if total % world_size:
        raise ValueError(f"a total batch of {total} is not divisible by {world_size} processes; pass --batch-size N "
                         f"with N a multiple of {world_size}")
    cfg.train_dataloader.batch_size = total // world_size
    changes, equivalent = [], []
    if total == ref_total and world_size != ref_world:
        equivalent.append(f"train_dataloader.batch_size: {ref_per} -> {total // world_size} per process "
                          f"({world_size} processes; total batch {total} kept)")
    if total != ref_total:
        if accumulate:
            if ref_total % total:
                raise ValueError(f"gradient accumulation needs a total batch dividing {ref_total}, got {total}")
            iters, lr = ref_total // total, 1.0
            cfg.optim_wrapper.accumulative_counts = iters
            how = f"gradient accumulation over {iters} micro-batches (lr unchanged, BN sees {total // world_size} images)"
        else:
            iters, lr = ref_total / total, total / ref_total
            how = f"linear scaling rule (lr x {total}/{ref_total}, iterations x {ref_total}/{total})"
        changes.append(f"total batch {ref_total} ({ref_world} GPUs x {ref_per}) -> {total} ({world_size} x "
                       f"{total // world_size}); {how}")
        cfg.optim_wrapper.optimizer.lr = preset.optim_wrapper.optimizer.lr * lr
        cfg.train_cfg.max_iters = round(preset.train_cfg.max_iters * iters)
        cfg.train_cfg.val_interval = max(1, round(preset.train_cfg.val_interval * iters))
        cfg.default_hooks.checkpoint.interval = max(1, round(preset.default_hooks.checkpoint.interval * iters))
        for sched, ref in zip(cfg.param_scheduler, preset.param_scheduler):
            sched["begin"], sched["end"] = round(ref.get("begin", 0) * iters), round(ref["end"] * iters)
            if "eta_min" in ref:
                sched["eta_min"] = ref["eta_min"] * lr
    if world_size == 1:
        for key, norm in _norms(cfg):
            if norm["type"] in ("SyncBN", "MMSyncBN"):
                norm["type"] = "BN"
                (equivalent if total == ref_total else changes).append(f"{key}: SyncBN -> BN (one process)")
    return changes, equivalent


def check_input_format(cfg, force: bool = False) -> list[str]:
    """The weights mmseg gets are torchvision-style (RGB, ImageNet mean/std x 255): the config's data
    preprocessor must feed that. Raises ValueError, or with `force` returns the mismatch as a change."""
    dp = cfg.model.get("data_preprocessor") or {}
    close = lambda a, b: a is not None and len(a) == 3 and all(abs(x - y) < 1e-3 for x, y in zip(a, b))
    if dp.get("bgr_to_rgb") and close(dp.get("mean"), PIXEL_MEAN) and close(dp.get("std"), PIXEL_STD):
        return []
    msg = (f"the weights are torchvision-style (RGB, mean {list(PIXEL_MEAN)}, std {list(PIXEL_STD)}) but the "
           f"config's data_preprocessor has bgr_to_rgb={dp.get('bgr_to_rgb')}, mean={dp.get('mean')}, std={dp.get('std')}; "
           "use a shipped preset (configs/transfer/mmseg) or set those three keys")
    return input_mismatch(msg, force)


def protocol_changes(preset, cfg, skip: list[str] = ()) -> list[str]:
    """Every protocol key whose value differs from the preset, as 'key: old -> new' (`skip`: changes
    adapt_to_run already listed)."""
    return changed_keys(flatten(preset.to_dict()), flatten(cfg.to_dict()), _is_protocol, skip)


def _is_protocol(key: str) -> bool:
    return not key.startswith(NOT_PROTOCOL) and key.rsplit(".", 1)[-1] not in NOT_PROTOCOL_LEAVES
