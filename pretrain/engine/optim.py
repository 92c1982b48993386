"""Optimizers (SGD, LARS) with parameter groups, the cosine schedule with warm-up (per epoch or per step),
and the target network's EMA schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio η·‖w‖/‖g + wd·w‖ (You et al., 2017).

    Groups with `lars_exclude=True` (biases, norms) get plain SGD without weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        """One update with fused multi-tensor (`torch._foreach_*`) kernels: a few launches per group, not several
        per parameter, and no new tensors (the gradients are turned into the update in place)."""
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            d = [p.grad for p in params]
            if not g["lars_exclude"]:
                torch._foreach_add_(d, params, alpha=g["weight_decay"])
                pn, dn = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(d))
                q = torch.where((pn > 0) & (dn > 0), g["eta"] * pn / dn, torch.ones_like(pn))
                torch._foreach_mul_(d, list(q.unbind()))
            for p in params:
                if "mu" not in self.state[p]:
                    self.state[p]["mu"] = torch.zeros_like(p)
            bufs = [self.state[p]["mu"] for p in params]
            torch._foreach_mul_(bufs, g["momentum"])
            torch._foreach_add_(bufs, d)
            torch._foreach_add_(params, bufs, alpha=-g["lr"])


def param_groups(model: nn.Module, weight_decay: float, exclude_norm_bias: bool, bias_lr_scale: float = 1.0) -> list[dict]:
    """Groups: "decay" (weights), "no_decay" (biases and norms, only with `exclude_norm_bias`: no weight decay,
    no LARS adaptation, lr x `bias_lr_scale`), and the same two for the predictors ("pred", "pred_no_decay";
    the predictors' lr may be fixed, `set_lr`)."""
    groups: dict[str, list] = {"decay": [], "no_decay": [], "pred": [], "pred_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = "pred" if ".predictors." in f".{name}" else "decay"
        if exclude_norm_bias and p.ndim <= 1:
            key = "no_decay" if key == "decay" else "pred_no_decay"
        groups[key].append(p)
    out = []
    for key, params in groups.items():
        if params or key == "decay":
            excluded = key.endswith("no_decay")
            out.append({"params": params, "weight_decay": 0.0 if excluded else weight_decay, "lars_exclude": excluded,
                        "lr_scale": bias_lr_scale if excluded else 1.0, "name": key})
    return out


def bias_lr_scale(cfg: dict, world_size: int = 1) -> float:
    """The biases' and norms' lr over the weights' (`optim.bias_lr` / `optim.lr`), divided by the process count
    with `optim.bias_lr_over_world`."""
    o = cfg["optim"]
    if o["bias_lr"] is None:
        return 1.0
    return o["bias_lr"] / o["lr"] / (world_size if o["bias_lr_over_world"] else 1)


def build_optimizer(model: nn.Module, cfg: dict, lr: float, world_size: int = 1) -> torch.optim.Optimizer:
    o = cfg["optim"]
    if o["name"] == "lars":
        return LARS(param_groups(model, o["weight_decay"], True, bias_lr_scale(cfg, world_size)), lr=lr,
                    momentum=o["momentum"], weight_decay=o["weight_decay"], eta=o["lars_eta"])
    return torch.optim.SGD(param_groups(model, o["weight_decay"], False), lr=lr, momentum=o["momentum"],
                           weight_decay=o["weight_decay"])


def ema_momentum(base: float, schedule: str, step: int, total: int) -> float:
    """The target network's EMA decay at `step`: `base` (constant), or BYOL's cosine from `base` to 1,
    1 - (1 - base)·(cos(π·step/total) + 1)/2."""
    if schedule == "constant":
        return base
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total) / max(1, total)) + 1) / 2


def scaled_lr(cfg: dict) -> float:
    """Linear scaling rule: base lr × global batch / 256."""
    return cfg["optim"]["lr"] * cfg["optim"]["batch_size"] / 256


def lr_at(step: int, total: int, warmup: int, base: float, final: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then half-cosine from `base` to `final` at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * min(1.0, t)))


def schedule_step(step: int, steps_per_epoch: int, warmup: int, unit: str) -> int:
    """The step `lr_at` is evaluated at: `step` itself (unit "step"), or (unit "epoch", the authors' and
    SimSiam's code) the first step of the current epoch once warm-up is over."""
    if unit == "step" or step < warmup:
        return step
    return max(warmup, step - step % steps_per_epoch)


def set_lr(opt: torch.optim.Optimizer, lr: float, base: float, fix_pred_lr: bool) -> None:
    """Every group at `lr` (the predictors' at `base` with `fix_pred_lr`), times the group's `lr_scale`."""
    for g in opt.param_groups:
        fixed = fix_pred_lr and g.get("name", "").startswith("pred")
        g["lr"] = (base if fixed else lr) * g.get("lr_scale", 1.0)
