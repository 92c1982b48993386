"""Configs: the shipped presets, the project's extra keys, and the honest adaptation of a protocol to
the hardware at hand (fewer GPUs, a CPU, a smaller batch) with every change listed."""
from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from pretrain.config.shipped import configs_dir

from ..convert import PIXEL_STD  # torchvision's ImageNet std x 255
from ..protocol import changed_keys, flatten, input_mismatch, label, resolve_preset
from ..tasks import TASKS

CONFIG_DIR = configs_dir() / "transfer" / "detectron2"
SYNC_NORMS = ("SyncBN", "naiveSyncBN", "nnSyncBN", "naiveSyncBN_N")
NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM")
# keys that say where and how a run executes, not what it computes
NOT_PROTOCOL = ("OUTPUT_DIR", "SEED", "MODEL.WEIGHTS", "MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "SOLVER.CHECKPOINT_PERIOD",
                "TEST.EVAL_PERIOD", "CUDNN_BENCHMARK", "VIS_PERIOD", "HIERAUG.")


def resolve_config(name: str) -> Path:
    """A shipped preset by name (`pascal_voc_R_50_C4_24k_moco`) or a path to a YAML file."""
    return resolve_preset(name, CONFIG_DIR, (".yaml", ".yml"), "detectron2")


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


def merge_overrides(cfg: CN, opts: list[str]) -> None:
    """KEY VALUE pairs into `cfg`; an unknown key or a key without a value stops with the keys it could be."""
    if len(opts) % 2:
        raise ValueError(f"config overrides come as KEY VALUE pairs; {opts[-1]!r} has no value")
    for key, value in zip(opts[::2], opts[1::2]):
        *parents, leaf = key.split(".")
        node, path = cfg, []
        for p in parents:
            if not isinstance(node.get(p), CN):
                known = sorted(k for k, v in node.items() if isinstance(v, CN))
                raise ValueError(f"override {key}: {'.'.join(path + [p])} is not a section of the detectron2 config; "
                                 f"sections{' of ' + '.'.join(path) if path else ''}: {', '.join(known)}")
            node, path = node[p], path + [p]
        if leaf not in node:
            raise ValueError(f"override {key}: no key {leaf!r} in {'.'.join(path) or 'the config'}; its keys: "
                             f"{', '.join(sorted(node))}")
        cfg.merge_from_list([key, value])


def check_task(task: str, cfg: CN, name: str) -> None:
    """The preset is one for `task`: its datasets are the task's data (`data`: voc_*, coco_* names), with masks
    where the task reports mask metrics (`segm`)."""
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    family = next((f for f in ("voc", "coco") if all(n.startswith(f + "_") for n in names)), None)
    want = TASKS[task].data
    if family != want:
        fits = " or ".join(t.name for t in TASKS.values() if t.engine == "detectron2" and t.data == family) or "no task of this suite"
        presets = sorted(p.stem for p in CONFIG_DIR.glob(f"*{want}*.yaml"))
        raise ValueError(f"{name} trains and evaluates on {names}: a preset for {fits}, not {task}; "
                         f"pass --config with a {task} preset ({', '.join(presets)})")
    if "segm" in TASKS[task].metric_groups and not cfg.MODEL.MASK_ON:
        raise ValueError(f"{name} has MODEL.MASK_ON False, so it predicts no masks for {task}; use a Mask R-CNN preset")


# key -> lowest allowed value (numbers checked before a run starts)
SOLVER_MIN = {"SOLVER.MAX_ITER": 1, "SOLVER.IMS_PER_BATCH": 1, "SOLVER.CHECKPOINT_PERIOD": 1, "SOLVER.WARMUP_ITERS": 0,
              "TEST.EVAL_PERIOD": 0, "TEST.PRECISE_BN.NUM_ITER": 1}


def check_numbers(cfg: CN) -> None:
    """Schedule values in range: iterations, batch, periods >= their minimum, lr > 0, steps >= 0."""
    flat = flatten(cfg)
    for key, lo in SOLVER_MIN.items():
        if not isinstance(flat[key], int) or flat[key] < lo:
            raise ValueError(f"{key}={flat[key]!r} is out of range: must be an integer >= {lo}")
    if not cfg.SOLVER.BASE_LR > 0:
        raise ValueError(f"SOLVER.BASE_LR={cfg.SOLVER.BASE_LR!r} is out of range: must be > 0")
    if any(not isinstance(s, int) or s < 0 for s in cfg.SOLVER.STEPS):
        raise ValueError(f"SOLVER.STEPS={list(cfg.SOLVER.STEPS)} is out of range: iterations >= 0 (detectron2 drops those "
                         "past SOLVER.MAX_ITER)")


def identity_config(preset: CN, opts: list[str]) -> dict:
    """The result-deciding keys of the preset with the user's overrides (before the per-process adaptation,
    which only depends on the process count): {KEY: value}."""
    cfg = preset.clone()
    merge_overrides(cfg, opts)
    return {k: v for k, v in flatten(cfg).items() if not k.startswith(NOT_PROTOCOL)}


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
    return changed_keys(flatten(preset), flatten(cfg), lambda k: not k.startswith(NOT_PROTOCOL), skip)


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
    return input_mismatch(msg, force)


def protocol_label(cfg: CN, changes: list[str]) -> str:
    """"demo" for demo presets; else "non-standard" when anything changed; else the preset's own label
    ("standard" for the community's protocol, "paper" for the paper's variant)."""
    return label(cfg.HIERAUG.PROTOCOL, changes)


def build_cfg(task: str, args, out: Path, weights: str | None, preset: CN) -> tuple[CN, list[str], list[str]]:
    """(resolved cfg, protocol changes, equivalent changes): preset + overrides (`args.opts`) + hardware
    adaptation (`adapt_to_run`); explicit overrides other than the batch win over the scaling rule."""
    cfg = preset.clone()
    merge_overrides(cfg, args.opts)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.OUTPUT_DIR = str(out)
    cfg.SEED = args.seed
    cfg.MODEL.DEVICE = args.device
    if TASKS[task].data == "voc":  # VOC has no instance masks
        cfg.MODEL.MASK_ON = False
    changes, equivalent = adapt_to_run(cfg, preset, args.num_gpus * args.num_machines, args.batch_size)
    explicit = [x for k, v in zip(args.opts[::2], args.opts[1::2]) if k != "SOLVER.IMS_PER_BATCH" for x in (k, v)]
    cfg.merge_from_list(explicit)
    check_numbers(cfg)
    return cfg, changes, equivalent


def run_identity(task: str, args, preset: CN) -> dict:
    """What decides this run's result (`common.transfer_identity`): weights, seed, data root, the preset with
    the overrides, the total batch, the input-format override."""
    from ..common import transfer_identity

    return transfer_identity(task, args.weights, args.seed, args.data_root, config=identity_config(preset, args.opts),
                             batch_size=args.batch_size, allow_input_mismatch=args.allow_input_mismatch)
