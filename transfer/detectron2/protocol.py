"""Configs: the shipped presets, the project's extra keys, and the honest adaptation of a protocol to
the hardware at hand (fewer GPUs, a CPU, a smaller batch) with every change listed."""
from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "transfer" / "detectron2"
DEFAULT_CONFIG = {"voc_det": "pascal_voc_R_50_C4_24k_moco", "coco_det": "coco_R_50_C4_1x_moco",
                  "coco_instseg": "coco_R_50_C4_1x_moco"}
SYNC_NORMS = ("SyncBN", "naiveSyncBN", "nnSyncBN", "naiveSyncBN_N")
NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM")
# keys that say where and how a run executes, not what it computes
NOT_PROTOCOL = ("OUTPUT_DIR", "SEED", "MODEL.WEIGHTS", "MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "SOLVER.CHECKPOINT_PERIOD",
                "TEST.EVAL_PERIOD", "CUDNN_BENCHMARK", "VIS_PERIOD", "HIERAUG.")


def resolve_config(name: str) -> Path:
    """A shipped preset by name (`pascal_voc_R_50_C4_24k_moco`) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("Base"))
        raise FileNotFoundError(f"no detectron2 config {name!r}; shipped presets: {', '.join(shipped)}")
    return path


def base_cfg() -> CN:
    """detectron2's defaults plus the project's HIERAUG node (protocol label, classes from data)."""
    cfg = get_cfg()
    cfg.HIERAUG = CN()
    cfg.HIERAUG.PROTOCOL = "standard"  # "standard" or "demo" (a demo is never reported as standard)
    cfg.HIERAUG.PROTOCOL_NAME = ""
    cfg.HIERAUG.CLASSES_FROM_DATA = False  # demo worlds use a subset of the VOC classes
    return cfg


def load_preset(path: Path) -> CN:
    cfg = base_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def _flat(node: CN, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        if isinstance(v, CN):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def adapt_to_run(cfg: CN, world_size: int, batch_size: int | None) -> None:
    """Linear scaling rule for another total batch (lr x b/B; iterations, steps and warm-up x B/b)
    and BN instead of synchronised BN in a single process."""
    ref = cfg.SOLVER.IMS_PER_BATCH
    if batch_size and batch_size != ref:
        scale = ref / batch_size
        cfg.SOLVER.IMS_PER_BATCH = batch_size
        cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR / scale
        cfg.SOLVER.MAX_ITER = round(cfg.SOLVER.MAX_ITER * scale)
        cfg.SOLVER.STEPS = tuple(round(s * scale) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.WARMUP_ITERS = round(cfg.SOLVER.WARMUP_ITERS * scale)
        cfg.SOLVER.CHECKPOINT_PERIOD = max(1, round(cfg.SOLVER.CHECKPOINT_PERIOD * scale))
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by {world_size} processes; "
                         "pass --batch-size with a multiple of the process count")
    if world_size == 1:
        for key in NORM_KEYS:
            *parents, leaf = key.split(".")
            node = cfg
            for p in parents:
                node = node[p]
            if node[leaf] in SYNC_NORMS:
                node[leaf] = "BN"


def protocol_changes(preset: CN, cfg: CN) -> list[str]:
    """Every protocol key whose value differs from the preset, as 'KEY: old -> new'."""
    a, b = _flat(preset), _flat(cfg)
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(NOT_PROTOCOL)]


def protocol_label(cfg: CN, changes: list[str]) -> str:
    if cfg.HIERAUG.PROTOCOL == "demo":
        return "demo"
    return "non-standard" if changes else "standard"
