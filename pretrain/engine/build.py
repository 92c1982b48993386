"""Config -> method module, multi-view transform and dataset."""
from __future__ import annotations

from pathlib import Path

from pretrain.data.views import MultiViewDataset, MultiViewTransform, PairSpec, read_class_list
from pretrain.methods import METHODS, HierSiamese
from pretrain.transforms.augment import IMAGENET_MEAN, IMAGENET_STD, AugPipeline
from pretrain.transforms.photometric import DeviceAugment

_PIPE_KEYS = ("size", "crop_scale", "flip_p", "jitter_p", "jitter", "gray_p", "blur_p", "blur_sigma", "solarize_p",
              "rotate_p", "interpolation")


def active_pairs(cfg: dict) -> tuple[list[dict], list[float]]:
    """The pairs in use and their loss weights: all of `hier.pairs`, or only the last one at stage 4."""
    h = cfg["hier"]
    if h["enabled"]:
        return h["pairs"], list(h["weights"])
    return [dict(h["pairs"][-1], stage=4)], [1.0]


def weakened(kw: dict, levels: int, steps: dict) -> dict:
    """"Hierarchical strength": `levels` steps weaker (supplementary, Sec. D): flip/grayscale/blur
    probabilities − levels·prob_step, each jitter strength − levels·jitter_step, the crop's minimum
    scale + levels·crop_step (all clipped to their valid ranges)."""
    dp, dj, dc = (levels * steps[k] for k in ("prob_step", "jitter_step", "crop_step"))
    lo, hi = kw["crop_scale"]
    return dict(kw, flip_p=max(0.0, kw["flip_p"] - dp), gray_p=max(0.0, kw["gray_p"] - dp),
                blur_p=max(0.0, kw["blur_p"] - dp), jitter=[max(0.0, j - dj) for j in kw["jitter"]],
                crop_scale=[min(hi, lo + dc), hi])


def _pipeline(aug: dict, view: int, types: list[str], levels: int, steps: dict) -> AugPipeline:
    kw = {k: aug[k] for k in _PIPE_KEYS}
    kw.update(aug["views"][view])
    if levels:
        kw = weakened(kw, levels, steps)
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return AugPipeline(types=tuple(types), **kw)


def resolve_augment_device(cfg: dict, device_type: str) -> str:
    """Where the photometric augmentations run: `loader` (per image, in the workers) or `train`
    (batched on the training device). `auto`: loader on CPU, train on GPU (benchmarks/perf/augment_throughput)."""
    d = cfg["augment"]["device"]
    return d if d != "auto" else ("loader" if device_type == "cpu" else "train")


def build_transform(cfg: dict, device_type: str = "cpu") -> MultiViewTransform:
    """The views of every active pair; with `augment.device` resolved to train, only their crop/resize/flip."""
    pairs, _ = active_pairs(cfg)
    strength = cfg["hier"]["strength"]
    specs = []
    for p in pairs:
        levels = 4 - p["stage"] if strength["enabled"] else 0
        views = tuple(_pipeline(cfg["augment"], v, p["types"], levels, strength) for v in (0, 1))
        specs.append(PairSpec(p["stage"], views))
    return MultiViewTransform(specs, geometric_only=resolve_augment_device(cfg, device_type) == "train")


def build_device_augment(cfg: dict, device_type: str) -> DeviceAugment | None:
    """The batched photometric step the trainer runs when `augment.device` resolves to train, else None."""
    if resolve_augment_device(cfg, device_type) != "train":
        return None
    return DeviceAugment(IMAGENET_MEAN, IMAGENET_STD, per_view=device_type == "cpu")


def resolve_batching(cfg: dict, device_type: str) -> str:
    b = cfg["method"]["batching"]
    return b if b != "auto" else ("view" if device_type == "cpu" else "shared")


def build_model(cfg: dict, device_type: str = "cpu") -> HierSiamese:
    m, h, e = cfg["method"], cfg["hier"], cfg["expand"]
    pairs, weights = active_pairs(cfg)
    stages = [p["stage"] for p in pairs]
    kwargs = dict(
        arch=m["arch"], stages=stages, weights=weights, proj=dict(m["proj"]), pred_hidden=m["pred_hidden"],
        head_reduce=tuple(h["head_reduce"]), attention=h["attention"],
        expand_stages=tuple(e["stages"]) if e["enabled"] else (), expand_params=tuple(e["params"]),
        expand_dim=e["dim"], momentum=m["momentum"], batching=resolve_batching(cfg, device_type),
        zero_init_residual=m["zero_init_residual"],
    )
    cls = METHODS[m["name"]]
    if cls.name == "mocov2":
        kwargs.update(queue_size=m["queue_size"], temperature=m["temperature"], symmetric=m["symmetric"])
    elif cls.name == "barlowtwins":
        kwargs.update(lambd=m["lambd"], scale=m["loss_scale"])
    return cls(**kwargs)


def build_dataset(cfg: dict, device_type: str = "cpu") -> MultiViewDataset:
    root = Path(cfg["data"]["train"])
    if not root.is_dir():
        raise FileNotFoundError(f"data.train={root} is not a folder; point it at an ImageFolder root "
                                "(one sub-folder per class), e.g. data.train=/datasets/imagenet/train")
    try:
        return MultiViewDataset(str(root), build_transform(cfg, device_type), cfg["train"]["seed"],
                                read_class_list(cfg["data"]["class_list"]))
    except FileNotFoundError as e:  # ImageFolder: a class folder without images, or no class folders
        raise FileNotFoundError(f"data.train={root}: {e} Every class folder needs at least one image; remove the empty "
                                "folders or point data.train at the ImageFolder root.") from None
