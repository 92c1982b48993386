"""Config -> method module and multi-view transform."""
from __future__ import annotations

from .augment import AugPipeline
from .methods import METHODS, HierSiamese
from .views import MultiViewTransform, PairSpec

_PIPE_KEYS = ("size", "crop_scale", "flip_p", "jitter_p", "jitter", "gray_p", "blur_p", "blur_sigma", "solarize_p")


def active_pairs(cfg: dict) -> tuple[list[dict], list[float]]:
    """The pairs in use and their loss weights: all of `hier.pairs`, or only the last one at stage 4."""
    h = cfg["hier"]
    if h["enabled"]:
        return h["pairs"], list(h["weights"])
    return [dict(h["pairs"][-1], stage=4)], [1.0]


def _pipeline(aug: dict, view: int, types: list[str], strength: float) -> AugPipeline:
    kw = {k: aug[k] for k in _PIPE_KEYS}
    kw.update(aug["views"][view])
    if strength != 1.0:  # "hierarchical strength": weaker augmentations at shallower stages
        lo = 1 - strength * (1 - kw["crop_scale"][0])
        kw.update(crop_scale=(lo, 1.0), jitter=[j * strength for j in kw["jitter"]],
                  gray_p=kw["gray_p"] * strength, blur_p=kw["blur_p"] * strength)
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return AugPipeline(types=tuple(types), **kw)


def build_transform(cfg: dict) -> MultiViewTransform:
    pairs, _ = active_pairs(cfg)
    specs = []
    for p in pairs:
        views = tuple(_pipeline(cfg["augment"], v, p["types"], p.get("strength", 1.0)) for v in (0, 1))
        specs.append(PairSpec(p["stage"], views))
    return MultiViewTransform(specs)


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
    )
    cls = METHODS[m["name"]]
    if cls.name == "mocov2":
        kwargs.update(queue_size=m["queue_size"], temperature=m["temperature"], symmetric=m["symmetric"])
    elif cls.name == "barlowtwins":
        kwargs.update(lambd=m["lambd"], scale=m["loss_scale"])
    return cls(**kwargs)
