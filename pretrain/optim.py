"""Optimizers (SGD, LARS) with parameter groups, and the per-step cosine schedule with warm-up."""
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


def param_groups(model: nn.Module, weight_decay: float, exclude_norm_bias: bool) -> list[dict]:
    """Groups: regular weights; biases/norms (no wd when `exclude_norm_bias`); predictors (fixed lr)."""
    groups = {"decay": [], "no_decay": [], "pred": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".predictors." in f".{name}":
            groups["pred"].append(p)
        elif exclude_norm_bias and p.ndim <= 1:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    out = [{"params": groups["decay"], "weight_decay": weight_decay, "name": "decay"}]
    if groups["no_decay"]:
        out.append({"params": groups["no_decay"], "weight_decay": 0.0, "lars_exclude": True, "name": "no_decay"})
    if groups["pred"]:
        out.append({"params": groups["pred"], "weight_decay": weight_decay, "name": "pred"})
    return out


def build_optimizer(model: nn.Module, cfg: dict, lr: float) -> torch.optim.Optimizer:
    o = cfg["optim"]
    if o["name"] == "lars":
        return LARS(param_groups(model, o["weight_decay"], True), lr=lr, momentum=o["momentum"],
                    weight_decay=o["weight_decay"], eta=o["lars_eta"])
    return torch.optim.SGD(param_groups(model, o["weight_decay"], False), lr=lr, momentum=o["momentum"],
                           weight_decay=o["weight_decay"])


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
    for g in opt.param_groups:
        g["lr"] = base if (fix_pred_lr and g.get("name") == "pred") else lr
