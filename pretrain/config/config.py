"""Pretraining configuration: defaults (the authors' setting), YAML files with `_base_`, KEY=VALUE overrides.

Every option lives in `DEFAULTS`; a config file or override naming an unknown key is an error.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from pretrain.config.shipped import shipped
from pretrain.runs.cli import InputError

FULL_AUGS = ["crop", "jitter", "gray", "blur", "flip"]
# The authors' add-one assignment: pair k adds one augmentation type and is contrasted after stage k.
ADD_ONE_PAIRS = [
    {"stage": 1, "types": ["crop", "jitter"]},
    {"stage": 2, "types": ["crop", "jitter", "gray"]},
    {"stage": 3, "types": ["crop", "jitter", "gray", "blur"]},
    {"stage": 4, "types": FULL_AUGS},
]

DEFAULTS: dict[str, Any] = {
    "method": {
        "name": "simsiam",          # simsiam | byol | barlowtwins | mocov2
        "arch": "resnet50",
        # the authors' projector: Linear-BN-ReLU x2, Linear (no bias) + affine BN
        "proj": {"hidden": 2048, "out": 2048, "num_layers": 3, "last_bn": True, "last_bn_affine": True, "hidden_bn": True},
        "pred_hidden": 512,         # SimSiam/BYOL predictor: out -> pred_hidden -> out
        "momentum": 0.99,           # BYOL target EMA / MoCo key encoder (MoCo v2: 0.999)
        "momentum_schedule": "constant",  # constant | cosine (BYOL: from `momentum` to 1 over training)
        "zero_init_residual": True,  # last BN of each residual block starts at 0 (SimSiam's and the authors'
                                    # code; MoCo's uses torchvision's default, False)
        "queue_size": 65536,        # MoCo
        "temperature": 0.2,         # MoCo
        "symmetric": False,         # MoCo: add the swapped query/key term
        "lambd": 3.9e-3,            # Barlow Twins off-diagonal weight
        "loss_scale": 0.03125,      # Barlow Twins loss scale (1/32)
        "batching": "auto",         # view | pair | shared | auto (all exact: per-view BN statistics; auto picks by
                                    # the speed measured in benchmarks/perf: view on CPU, shared on GPU)
    },
    "hier": {                       # "where to contrast"
        "enabled": True,            # False: only the last pair, at stage 4 (the plain baseline)
        "pairs": ADD_ONE_PAIRS,
        "weights": [1.0, 1.0, 1.0, 1.0],
        "head_reduce": [64, 128, 256],  # stage-1..3 heads reduce to these, then double per stage (-> 512)
        "attention": True,
        "strength": {               # "hierarchical strength" comparison: per level below stage 4, every pair's
            "enabled": False,       # augmentations get weaker by these steps (supplementary, Sec. D)
            "prob_step": 0.05,      # flip, grayscale and blur probabilities
            "jitter_step": 0.02,    # each of the four jitter strengths
            "crop_step": 0.1,       # the crop's minimum scale (added)
        },
    },
    "expand": {                     # "what to contrast"
        "enabled": True,
        "params": ["jitter"],       # parameter groups embedded: jitter (4 factors), crop, flip, gray, blur, solarize
        "stages": [2, 3, 4],
        "dim": 512,
    },
    "augment": {
        "size": 224, "crop_scale": [0.2, 1.0], "flip_p": 0.5, "jitter_p": 0.8, "jitter": [0.4, 0.4, 0.4, 0.1],
        "gray_p": 0.2, "blur_p": 0.5, "blur_sigma": [0.1, 2.0], "solarize_p": 0.0,
        "rotate_p": 0.5,            # used only by pairs whose types include "rotate" (off in the authors' setting)
        "interpolation": "bilinear",  # the crop's resize: bilinear (torchvision's default) | bicubic (BYOL, Barlow Twins)
        "views": [{}, {}],          # per-view overrides of the keys above (BYOL's published asymmetric blur/solarize)
        "device": "auto",           # where rotation/jitter/blur/grayscale/solarize/normalisation run: loader (per image,
                                    # in the workers) | train (batched on the training device, the workers only decode,
                                    # crop, resize, flip) | auto (by benchmarks/perf/augment_throughput: loader on CPU,
                                    # train on GPU); the same images and parameter vectors either way
    },
    "data": {
        "train": "data/imagenet/train",  # an ImageFolder root
        "class_list": None,         # file with one class folder name per line (ImageNet-100 subsets)
        "workers": 8,               # per process
        "max_bad_fraction": 0.001,  # unreadable images are skipped (replaced, logged); more than this fraction
                                    # of the dataset stops the run (a wrong path or a broken mount fails fast)
    },
    "optim": {
        "name": "sgd",              # sgd | lars
        "lr": 0.05,                 # base lr for a global batch of 256 (linear scaling rule)
        "batch_size": 256,          # global batch over all processes
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "epochs": 200,
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "fix_pred_lr": True,        # SimSiam (the authors): the predictor's lr is not decayed
        "schedule_unit": "epoch",   # cosine evaluated per epoch (the authors' and SimSiam's code) or per step
        "lars_eta": 0.001,
        "bias_lr": None,            # base lr (batch 256) of biases and BN parameters; None: the weights' lr
        "bias_lr_over_world": False,  # divide bias_lr by the process count (see the Barlow Twins recipe)
    },
    "train": {
        "seed": 0,
        "device": "auto",           # auto | cpu | cuda
        "amp": True,                # autocast on GPU (bf16 where native, else fp16 + GradScaler); losses in fp32
        "tf32_matmul": False,       # GPU: TF32 for fp32 matrix products (PyTorch's default: off; the losses need fp32)
        "tf32_conv": True,          # GPU: TF32 for fp32 cuDNN convolutions (PyTorch's default: on)
        "cudnn_benchmark": True,    # GPU: cuDNN autotuning (input sizes are fixed)
        "sync_bn": True,            # SyncBN when there are several processes
        "ckpt_every_steps": 0,      # also checkpoint every N steps (0: only at epoch ends)
        "ckpt_every_minutes": 30,   # also checkpoint when this long has passed since the last one (0: never)
        "keep_every_epochs": 0,     # keep epoch_XXXX.pth every N epochs (0: only last.pth)
        "log_every": 10,
        "max_steps": 0,             # stop after this many steps (0: the whole schedule); for smoke runs
        "output": None,             # default: work_dirs/<config name>
    },
}


class ConfigError(InputError):
    """A config key or value that cannot run; the message names the key."""


def _merge(base: dict, new: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if k not in out:
            raise ConfigError(f"{where}: unknown key {k!r}; known keys here: {sorted(out)}")
        if isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = _coerce(out[k], v, f"{where}.{k}")
    return out


def _coerce(default, value, where: str):
    """Numbers written like '1e-4' (YAML 1.1 reads them as strings) become floats; other mismatches are errors."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _read(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder; give a YAML file (e.g. configs/pretrain/*.yaml)")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path} holds a YAML {type(doc).__name__}; its top level must be a mapping "
                          "of sections (method:, optim:, ...)")
    bases = doc.pop("_base_", [])
    merged: dict = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _deep_update(merged, _read((path.parent / b).resolve()))
    return _deep_update(merged, doc)


def _deep_update(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _deep_update(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def parse_override(item: str) -> dict:
    """'optim.lr=0.1' -> {'optim': {'lr': 0.1}} (the value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=0.1)")
    key, value = item.split("=", 1)
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = yaml.safe_load(value)
    return node


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """DEFAULTS <- config file (with its `_base_` chain) <- overrides, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    name = "defaults"
    if path is not None:
        if not Path(path).exists() and shipped(str(path)).is_file():  # configs/pretrain/NAME.yaml from any folder
            path = shipped(str(path))
        cfg = _merge(cfg, _read(Path(path)), str(path))
        name = Path(path).stem
    for item in overrides:
        cfg = _merge(cfg, parse_override(item), f"override {item!r}")
    cfg["name"] = name
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    from pretrain.methods import METHODS
    from pretrain.models.backbones import ARCHS

    m, h = cfg["method"], cfg["hier"]
    if m["name"] not in METHODS:
        raise ConfigError(f"method.name {m['name']!r} is not one of {sorted(METHODS)}")
    if m["arch"] not in ARCHS:
        raise ConfigError(f"method.arch {m['arch']!r} is not one of {ARCHS}")
    if m["batching"] not in ("auto", "view", "pair", "shared"):
        raise ConfigError(f"method.batching must be auto, view, pair or shared, got {m['batching']!r}")
    from pretrain.transforms.augment import AUG_TYPES

    for p in h["pairs"]:
        if p.get("stage") not in (1, 2, 3, 4):
            raise ConfigError(f"hier.pairs: stage must be 1..4 (layer1..layer4), got {p}")
        extra = set(p) - {"stage", "types"}
        if extra:
            raise ConfigError(f"hier.pairs: unknown keys {sorted(extra)} in {p}; a pair has 'stage' and 'types' "
                              "(weaker augmentations per stage: hier.strength.enabled=true)")
        bad = set(p.get("types", [])) - set(AUG_TYPES)
        if bad:
            raise ConfigError(f"hier.pairs: unknown augmentation types {sorted(bad)} in {p}; known: {list(AUG_TYPES)}")
    if h["enabled"] and len(h["weights"]) != len(h["pairs"]):
        raise ConfigError(f"hier.weights has {len(h['weights'])} entries for {len(h['pairs'])} pairs")
    if len(cfg["augment"]["views"]) != 2:
        raise ConfigError("augment.views must hold two dicts (overrides for view 1 and view 2)")
    if cfg["augment"]["device"] not in ("auto", "loader", "train"):
        raise ConfigError(f"augment.device must be auto, loader or train, got {cfg['augment']['device']!r}")
    if cfg["optim"]["schedule_unit"] not in ("epoch", "step"):
        raise ConfigError(f"optim.schedule_unit must be epoch or step, got {cfg['optim']['schedule_unit']!r}")
    if cfg["optim"]["name"] not in ("sgd", "lars"):
        raise ConfigError(f"optim.name must be sgd or lars, got {cfg['optim']['name']!r}")
    if m["momentum_schedule"] not in ("constant", "cosine"):
        raise ConfigError(f"method.momentum_schedule must be constant or cosine, got {m['momentum_schedule']!r}")
    if cfg["augment"]["interpolation"] not in ("bilinear", "bicubic"):
        raise ConfigError(f"augment.interpolation must be bilinear or bicubic, got {cfg['augment']['interpolation']!r}")
    if cfg["optim"]["bias_lr"] is not None:
        _in_range("optim.bias_lr", cfg["optim"]["bias_lr"], False, 0, None, False)
        if cfg["optim"]["name"] != "lars":
            raise ConfigError("optim.bias_lr applies to LARS's excluded group (biases and norms); with optim.name=sgd "
                              "they share the weights' lr: remove optim.bias_lr or use optim.name=lars")
    if cfg["train"]["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, got {cfg['train']['device']!r}")
    _check_ranges(cfg)


# key -> (integer?, lowest, highest, lowest excluded?): numbers checked where they enter
RANGES = {
    "optim.epochs": (True, 1, None, False), "optim.batch_size": (True, 1, None, False), "optim.lr": (False, 0, None, True),
    "optim.momentum": (False, 0, 1, False), "optim.weight_decay": (False, 0, None, False),
    "optim.warmup_epochs": (False, 0, None, False), "optim.min_lr": (False, 0, None, False),
    "optim.lars_eta": (False, 0, None, True),
    "augment.size": (True, 16, None, False), "augment.flip_p": (False, 0, 1, False), "augment.jitter_p": (False, 0, 1, False),
    "augment.gray_p": (False, 0, 1, False), "augment.blur_p": (False, 0, 1, False), "augment.solarize_p": (False, 0, 1, False),
    "augment.rotate_p": (False, 0, 1, False),
    "data.workers": (True, 0, None, False), "data.max_bad_fraction": (False, 0, 1, False),
    "train.seed": (True, 0, None, False), "train.log_every": (True, 1, None, False),
    "train.ckpt_every_steps": (True, 0, None, False), "train.ckpt_every_minutes": (False, 0, None, False),
    "train.keep_every_epochs": (True, 0, None, False),
    "train.max_steps": (True, 0, None, False),
    "method.momentum": (False, 0, 1, False), "method.queue_size": (True, 1, None, False),
    "method.temperature": (False, 0, None, True), "method.pred_hidden": (True, 1, None, False),
    "method.lambd": (False, 0, None, False), "method.loss_scale": (False, 0, None, True),
    "method.proj.hidden": (True, 1, None, False), "method.proj.out": (True, 1, None, False),
    "method.proj.num_layers": (True, 1, None, False), "expand.dim": (True, 1, None, False),
}


def _in_range(key: str, value, integer: bool, lo, hi, open_lo: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not integer or float(value).is_integer())
    ok = ok and (lo is None or (value > lo if open_lo else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        want = ("an integer" if integer else "a number") + (f" {'>' if open_lo else '>='} {lo}" if lo is not None else "") \
            + (f" and <= {hi}" if hi is not None else "")
        raise ConfigError(f"{key}={value!r} is out of range: must be {want}")


def _check_ranges(cfg: dict) -> None:
    for key, spec in RANGES.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        _in_range(key, node, *spec)
    a = cfg["augment"]
    for view in [a, *a["views"]]:
        lo, hi = view.get("crop_scale", a["crop_scale"])
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augment.crop_scale={[lo, hi]} is out of range: must be 0 < min <= max <= 1")
        lo, hi = view.get("blur_sigma", a["blur_sigma"])
        if not 0 < lo <= hi:
            raise ConfigError(f"augment.blur_sigma={[lo, hi]} is out of range: must be 0 < min <= max")
        jitter = view.get("jitter", a["jitter"])
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ConfigError(f"augment.jitter={jitter} is out of range: four strengths >= 0 (brightness, contrast, "
                              "saturation, hue <= 0.5)")
        for k in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "rotate_p"):
            if k in view and view is not a:
                _in_range(f"augment.views[].{k}", view[k], False, 0, 1, False)
    for i, w in enumerate(cfg["hier"]["weights"]):
        _in_range(f"hier.weights[{i}]", w, False, 0, None, False)


# what does not change a run's result: where and how it runs (may differ between a run and its resume)
SETTINGS = ("name", "train.output", "train.device", "train.ckpt_every_steps", "train.ckpt_every_minutes",
            "train.keep_every_epochs", "train.log_every",
            "train.max_steps", "data.workers", "data.max_bad_fraction", "method.batching", "augment.device",
            "train.tf32_matmul", "train.tf32_conv", "train.cudnn_benchmark")


def identity(cfg: dict) -> tuple[dict, dict]:
    """(identity, settings) of a pretraining run: every config key except `SETTINGS`, with the data folder
    as an absolute path and the class list as its class names; the settings apart."""
    ident, settings = copy.deepcopy(cfg), {}
    for key in SETTINGS:
        *parents, leaf = key.split(".")
        node = ident
        for p in parents:
            node = node[p]
        settings[key] = node.pop(leaf)
    ident["data"]["train"] = str(Path(cfg["data"]["train"]).expanduser().resolve())
    if cfg["data"]["class_list"] is not None:
        from pretrain.data.views import read_class_list

        ident["data"]["class_list"] = read_class_list(cfg["data"]["class_list"])
    return ident, settings


