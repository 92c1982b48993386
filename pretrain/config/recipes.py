"""The recipe table: what every shipped pretraining preset runs, generated from the configs, and where each
published value comes from.

    python -m pretrain.config.recipes              # every preset in configs/pretrain/
    python -m pretrain.config.recipes CONFIG [...]  # these presets

Prints Markdown: one row per preset (method, backbone init, optimiser, lr rule, weight decay, schedule,
warm-up, batch, epochs, EMA, projector / predictor, loss constants, per-view augmentation, precision),
then, for each published recipe, every value with its source (a file of the official code at a commit,
or a table/section of the paper).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pretrain.config.config import load_config
from pretrain.config.shipped import configs_dir

PRESETS = configs_dir() / "pretrain"

BYOL = "Grill et al. 2020 (arXiv 2006.07733)"
BT_CODE = "facebookresearch/barlowtwins main.py @8e8d284"
MOCO = "facebookresearch/moco main_moco.py / moco/builder.py @ main"
SIMSIAM = "facebookresearch/simsiam main_simsiam.py / simsiam/builder.py @ main"

# published recipe -> field -> source of its value (the values themselves come from the configs; the tests
# pin them against the sources' numbers written out by hand)
SOURCES: dict[str, dict[str, str]] = {
    "simsiam": {
        "init": f"{SIMSIAM}: models.__dict__[arch](zero_init_residual=True)",
        "optimizer": f"{SIMSIAM}: SGD, momentum 0.9", "lr": f"{SIMSIAM}: --lr 0.05, init_lr = lr x batch / 256",
        "wd": f"{SIMSIAM}: --wd 1e-4", "schedule": f"{SIMSIAM}: adjust_learning_rate, cosine per epoch; predictor lr fixed (--fix-pred-lr)",
        "warmup": f"{SIMSIAM}: none", "ema": "-",
        "heads": f"{SIMSIAM}: projector 3 x (Linear-BN), last BN affine=False; predictor 2048-512-2048",
        "loss": "Chen & He 2021, Alg. 1: symmetric negative cosine with stop-gradient",
        "augment": f"{SIMSIAM}: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, "
                   "grayscale 0.2, blur sigma 0.1-2 p 0.5, flip; both views alike",
    },
    "mocov2": {
        "init": f"{MOCO}: base_encoder(num_classes=dim), torchvision's zero_init_residual=False",
        "optimizer": f"{MOCO}: SGD, momentum 0.9", "lr": f"{MOCO}: --lr 0.03 for batch 256 (README: MoCo v2 recipe)",
        "wd": f"{MOCO}: --wd 1e-4", "schedule": f"{MOCO}: --cos, per epoch", "warmup": f"{MOCO}: none",
        "ema": f"{MOCO}: --moco-m 0.999, constant", "heads": f"{MOCO}: --mlp, 2048-ReLU-128, no BN",
        "loss": f"{MOCO}: --moco-t 0.2, --moco-k 65536, shuffle BN",
        "augment": f"{MOCO}: aug+ (RandomResizedCrop 0.2-1, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, "
                   "blur sigma 0.1-2 p 0.5, flip)",
    },
    "byol": {
        "init": "not stated in the paper; the project's default (True), as haiku's ResNet BlockV1 that the "
                "official JAX code uses (not re-checked here)",
        "optimizer": f"{BYOL}, App. C: LARS, momentum 0.9, biases and BN excluded from adaptation and weight decay",
        "lr": f"{BYOL}, App. C: 0.2 x batch / 256", "wd": f"{BYOL}, App. C: 1.5e-6",
        "schedule": f"{BYOL}, App. C: cosine decay (per step)", "warmup": f"{BYOL}, App. C: 10 epochs",
        "ema": f"{BYOL}, Sec. 3.2 / App. C: tau = 1 - (1 - 0.996)(cos(pi k / K) + 1) / 2",
        "heads": f"{BYOL}, Sec. 3.3: projector and predictor Linear(4096)-BN-ReLU-Linear(256)",
        "loss": f"{BYOL}, Eq. 2: symmetrised 2 - 2 cos(q, sg(z'))",
        "augment": f"{BYOL}, App. B, Table 6: crop 0.08-1 bicubic, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, "
                   "blur 1.0 / 0.1, solarize 0 / 0.2, flip",
    },
    "barlowtwins": {
        "init": f"{BT_CODE}: torchvision.models.resnet50(zero_init_residual=True)",
        "optimizer": f"{BT_CODE}: LARS(eta 0.001, momentum 0.9, weight_decay_filter and lars_adaptation_filter: "
                     "ndim == 1 excluded)",
        "lr": f"{BT_CODE}: --learning-rate-weights 0.2, --learning-rate-biases 0.0048, x batch / 256",
        "wd": f"{BT_CODE}: --weight-decay 1e-6 (the paper says 1.5e-6; the release's default is kept)",
        "schedule": f"{BT_CODE}: adjust_learning_rate, cosine per step to end_lr = 0.001 x base", "warmup": f"{BT_CODE}: 10 epochs",
        "ema": "-", "heads": f"{BT_CODE}: --projector 8192-8192-8192",
        "loss": f"{BT_CODE}: --lambd 0.0051, no loss scale (the early release f13c949 had 3.9e-3 and 1/32)",
        "augment": f"{BT_CODE}: Transform (crop 0.08-1 bicubic, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, "
                   "blur 1.0 / 0.1, solarize 0 / 0.2, flip)",
    },
}
PAPER = "the paper's shared setting (Zhang & Ma, CVPR 2022, supplementary A) and the authors' code"


def _g(x: float) -> str:
    return f"{x:g}"


def recipe(cfg: dict) -> dict[str, str]:
    """The recipe fields of a resolved config, as text."""
    m, o, a, t = cfg["method"], cfg["optim"], cfg["augment"], cfg["train"]
    lr = f"{_g(o['lr'])} x B/256"
    if o["bias_lr"] is not None:
        lr += f"; biases/BN {_g(o['bias_lr'])} x B/256" + (" / W" if o["bias_lr_over_world"] else "")
    opt = "LARS (eta " + _g(o["lars_eta"]) + "; biases/BN excluded)" if o["name"] == "lars" else "SGD"
    end = "" if not o["min_lr"] else f" to {_g(o['min_lr'] / o['lr'])} x base"
    schedule = f"cosine per {o['schedule_unit']}{end}" + ("; predictor lr fixed" if o["fix_pred_lr"] and m["name"] in ("simsiam", "byol") else "")
    ema = "-"
    if m["name"] in ("byol", "mocov2"):
        ema = _g(m["momentum"]) + (" -> 1 (cosine)" if m["momentum_schedule"] == "cosine" else "")
    p = m["proj"]
    heads = f"proj {'-'.join([str(p['hidden'])] * (p['num_layers'] - 1) + [str(p['out'])])}"
    heads += (" +BN" + ("" if p["last_bn_affine"] else " (no affine)")) if p["last_bn"] else ""
    if m["name"] in ("simsiam", "byol"):
        heads += f"; pred {m['pred_hidden']}-{p['out']}"
    loss = {"barlowtwins": f"lambda {_g(m['lambd'])}, scale {_g(m['loss_scale'])}",
            "mocov2": f"T {_g(m['temperature'])}, queue {m['queue_size']}"}.get(m["name"], "-")
    views = [dict(a, **v) for v in a["views"]]
    per_view = " / ".join(_g(v[k]) for k in ("blur_p", "solarize_p") for v in views)
    b, c, s, h = a["jitter"]
    aug = (f"crop {_g(a['crop_scale'][0])}-{_g(a['crop_scale'][1])} {a['interpolation']}; jitter ({_g(b)}, {_g(c)}, {_g(s)}, "
           f"{_g(h)}) p {_g(a['jitter_p'])}; gray {_g(a['gray_p'])}; blur / solarize v1 / v2: {per_view}")
    return {"method": m["name"] + (" + method" if cfg["hier"]["enabled"] or cfg["expand"]["enabled"] else ""),
            "init": f"zero_init_residual={m['zero_init_residual']}", "optimizer": opt, "lr": lr,
            "wd": _g(o["weight_decay"]), "schedule": schedule, "warmup": f"{_g(o['warmup_epochs'])} ep",
            "batch": str(o["batch_size"]), "epochs": str(o["epochs"]), "ema": ema, "heads": heads, "loss": loss,
            "augment": aug, "precision": "AMP (bf16 native / fp16 + scaler) on GPU; losses fp32" if t["amp"] else "fp32"}


def family(path: Path) -> str | None:
    """The published recipe a preset claims (`<method>-published` / `<method>-hier-published`; every full-size
    MoCo v2 preset, MoCo v2 not being in the paper), else None."""
    stem = path.stem.split("_")[0]
    if stem.endswith("-published") or (stem.split("-")[0] == "mocov2" and not path.stem.endswith("_demo")):
        return stem.split("-")[0]
    return None


COLUMNS = ["method", "init", "optimizer", "lr", "wd", "schedule", "warmup", "batch", "epochs", "ema", "heads", "loss",
           "augment", "precision"]


def table(paths: list[Path]) -> str:
    """Markdown: presets with the same recipe share a row; then each published recipe's values with sources."""
    rows: dict[tuple, list[str]] = {}
    claimed: dict[str, tuple[list[str], dict]] = {}
    for path in paths:
        r = recipe(load_config(path))
        rows.setdefault(tuple(r[c] for c in COLUMNS), []).append(path.stem)
        if family(path):
            claimed.setdefault(family(path), ([], r))[0].append(path.stem)
    out = ["Presets other than `*-published` follow " + PAPER + ".", "",
           "| presets | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    out += ["| " + "<br>".join(f"`{n}`" for n in names) + " | " + " | ".join(values) + " |" for values, names in rows.items()]
    for fam, (names, r) in claimed.items():
        out += ["", f"**{fam}, published recipe** (`{'`, `'.join(names)}`)", "", "| field | value | source |", "|---|---|---|"]
        out += [f"| {k} | {r[k]} | {SOURCES[fam][k]} |" for k in SOURCES[fam]]
    if "barlowtwins" in claimed:
        out += ["", "Barlow Twins' gradient: this project's loss gives every process the gradient of the global-batch "
                "loss (the same for any process count); the released code's per-process gradient is 1/W of it. "
                "LARS makes the weights' update nearly scale-free; the biases' lr is divided by W "
                "(`optim.bias_lr_over_world`), so the published preset updates as the release does."]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", type=Path, help="presets (default: every configs/pretrain/*.yaml)")
    args = p.parse_args(argv)
    paths = args.configs or sorted(PRESETS.glob("*.yaml"))
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
