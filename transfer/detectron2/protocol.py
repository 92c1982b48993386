"""Configs: the shipped presets, the project's extra keys, and the honest adaptation of a protocol to
the hardware at hand (fewer GPUs, a CPU, a smaller batch) with every change listed."""
from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from ..convert import PIXEL_STD  # torchvision's ImageNet std x 255

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
    cfg.HIERAUG.PROTOCOL = "standard"  # "standard" (MoCo's), "paper" (the paper's variant) or "demo"
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


def adapt_to_run(cfg: CN, preset: CN, world_size: int, batch_size: int | None) -> tuple[list[str], list[str]]:
    """Fit the preset to `world_size` processes: (protocol changes, equivalent changes).

    The reference batch is the preset's SOLVER.IMS_PER_BATCH (a total, split over processes by
    detectron2). Another total, from `batch_size` or a SOLVER.IMS_PER_BATCH override, gets the linear
    scaling rule applied to the preset's values: lr x b/B; iterations, steps, warm-up, checkpoint and
    evaluation periods x B/b; PreciseBN's iterations x B/b (the same number of images). In one process
    synchronised BN becomes BN; with the whole batch in that process the statistics are the same (an
    equivalent change)."""
    ref = preset.SOLVER.IMS_PER_BATCH
    total = batch_size or cfg.SOLVER.IMS_PER_BATCH
    changes, equivalent = [], []
    if total != ref:
        scale = ref / total
        cfg.SOLVER.IMS_PER_BATCH = total
        cfg.SOLVER.BASE_LR = preset.SOLVER.BASE_LR / scale
        cfg.SOLVER.MAX_ITER = round(preset.SOLVER.MAX_ITER * scale)
        cfg.SOLVER.STEPS = tuple(round(s * scale) for s in preset.SOLVER.STEPS)
        cfg.SOLVER.WARMUP_ITERS = round(preset.SOLVER.WARMUP_ITERS * scale)
        cfg.SOLVER.CHECKPOINT_PERIOD = max(1, round(preset.SOLVER.CHECKPOINT_PERIOD * scale))
        cfg.TEST.EVAL_PERIOD = round(preset.TEST.EVAL_PERIOD * scale)
        cfg.TEST.PRECISE_BN.NUM_ITER = max(1, round(preset.TEST.PRECISE_BN.NUM_ITER * scale))
        changes.append(f"total batch {ref} -> {total}; linear scaling rule (lr x {total}/{ref}, iterations, steps, "
                       f"warm-up and PreciseBN iterations x {ref}/{total})")
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
                (equivalent if total == ref else changes).append(f"{key}: {node[leaf]} -> BN (one process)")
                node[leaf] = "BN"
    return changes, equivalent


def protocol_changes(preset: CN, cfg: CN, skip: list[str] = ()) -> list[str]:
    """Every protocol key whose value differs from the preset, as 'KEY: old -> new' (keys named at the
    start of the entries in `skip` are left out: changes adapt_to_run already listed)."""
    a, b = _flat(preset), _flat(cfg)
    done = tuple(e.split(":")[0] for e in skip)
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(NOT_PROTOCOL) and k not in done]


FORMATS = {"torchvision": "RGB input, ImageNet mean/std x 255, stride in the 3x3 conv (STRIDE_IN_1X1 False)",
           "caffe2": "BGR input, std 1, stride in the 1x1 conv (STRIDE_IN_1X1 True), as MSRA's caffe2 weights"}


def input_format(cfg: CN) -> str:
    """What weights a config's input pipeline is made for: 'torchvision', 'caffe2' or 'other'."""
    std = tuple(float(x) for x in cfg.MODEL.PIXEL_STD)
    stride_1x1 = cfg.MODEL.RESNETS.STRIDE_IN_1X1
    if cfg.INPUT.FORMAT == "RGB" and not stride_1x1 and all(abs(a - b) < 1e-3 for a, b in zip(std, PIXEL_STD)):
        return "torchvision"
    if cfg.INPUT.FORMAT == "BGR" and stride_1x1 and all(abs(a - 1) < 1e-6 for a in std):
        return "caffe2"
    return "other"


def check_input_format(cfg: CN, weights_format: str | None, config_name: str, force: bool = False) -> list[str]:
    """Weights and input pipeline must agree. Raises ValueError naming the preset to use, or with
    `force` returns the mismatch as a protocol change (the run is then labelled non-standard)."""
    have = input_format(cfg)
    if weights_format is None or have == weights_format:
        return []
    other = f"{config_name}_moco" if weights_format == "torchvision" else config_name.removesuffix("_moco")
    hint = (f"use --config {other}" if other != config_name and (CONFIG_DIR / f"{other}.yaml").is_file()
            else f"use a preset made for them ({FORMATS[weights_format]})")
    msg = (f"the weights are {weights_format}-style ({FORMATS[weights_format]}) but {config_name} is set up for "
           f"{FORMATS.get(have, 'another input format')}; {hint}")
    if not force:
        raise ValueError(f"{msg}. --allow-input-mismatch forces the run, labelled non-standard")
    return [f"input format mismatch (forced): {msg}"]


def protocol_label(cfg: CN, changes: list[str]) -> str:
    """"demo" for demo presets; else "non-standard" when anything changed; else the preset's own label
    ("standard" for the community's protocol, "paper" for the paper's variant)."""
    if cfg.HIERAUG.PROTOCOL == "demo":
        return "demo"
    return "non-standard" if changes else cfg.HIERAUG.PROTOCOL
