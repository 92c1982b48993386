"""The hierarchical Siamese wrapper every baseline shares; the method is a switch on it.

A baseline with one pair of views at stage 4 and no embedding is the plain baseline. With
`hier` on, pair k is contrasted after stage `pairs[k].stage` ("where to contrast"); with `expand`
on, stage-s features are concatenated with an embedding of the views' augmentation parameters
before the projector ("what to contrast"). The total loss is Σ_s w_s · loss_s, each stage's loss
being the baseline's own loss on its pair.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from pretrain.models.encoder import Encoder
from pretrain.models.heads import mlp


class HierSiamese(nn.Module):
    """Subclasses set the class attributes and implement `pair_loss`.

    forward(views, params) with views/params lists of 2P tensors (B, 3, S, S) / (B, PARAM_DIM),
    ordered pair by pair, returns (loss, {"loss/stage{s}": value, ...}).
    """

    name = "base"
    uses_predictor = False
    uses_target = False  # an EMA copy of the online encoder gives the targets

    def __init__(self, arch: str, stages: list[int], weights: list[float], proj: dict, pred_hidden: int = 512,
                 head_reduce=(64, 128, 256), attention: bool = True, expand_stages=(), expand_params=("jitter",),
                 expand_dim: int = 512, momentum: float = 0.99, batching: str = "view", zero_init_residual: bool = True):
        super().__init__()
        if len(weights) != len(stages):
            raise ValueError(f"one stage weight per pair is needed: {len(stages)} pairs, {len(weights)} weights")
        self.stages, self.weights, self.batching, self.momentum = list(stages), list(weights), batching, momentum
        self.online = Encoder(arch, stages, proj, head_reduce, attention, expand_stages, expand_params, expand_dim,
                              zero_init_residual)
        out = proj["out"]
        if self.uses_predictor:
            self.predictors = nn.ModuleDict({str(s): mlp(out, pred_hidden, out, 2, last_bn=False) for s in self.online.stages})
        if self.uses_target:
            self.target = copy.deepcopy(self.online)
            for p in self.target.parameters():
                p.requires_grad = False

    @property
    def backbone(self) -> nn.Module:
        """The network that transfers: the online ResNet (keys `online.backbone.*`)."""
        return self.online.backbone

    def view_stages(self) -> list[int]:
        return [s for s in self.stages for _ in range(2)]

    @torch.no_grad()
    def update_target(self, momentum: float | None = None) -> None:
        """EMA step θ_t ← m·θ_t + (1 − m)·θ_o over parameters and buffers (BN statistics copied)."""
        if not self.uses_target:
            return
        m = self.momentum if momentum is None else momentum
        target, online = list(self.target.parameters()), list(self.online.parameters())  # no_grad: no detach needed
        torch._foreach_mul_(target, m)  # fused over all tensors
        torch._foreach_add_(target, online, alpha=1 - m)
        torch._foreach_copy_(list(self.target.buffers()), list(self.online.buffers()))

    def targets(self, views, params) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.target(views, params, self.view_stages(), self.batching)

    def predict(self, z: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.predictors[str(s)](zk) for zk, s in zip(z, self.view_stages())]

    def pair_loss(self, k: int, s: int, z: list[torch.Tensor], p: list[torch.Tensor] | None,
                  t: list[torch.Tensor] | None) -> torch.Tensor:
        """The baseline's loss on pair k (stage s); z/p/t are the pair's two online projections,
        predictions and target projections."""
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor], params: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (total loss, {"loss/stageS": detached scalar tensor}); the losses are computed in fp32 with autocast
        off (as MoCo v3 and solo-learn do): Barlow Twins' cross-correlation and MoCo's logits lose too much in
        bf16/fp16. Nothing here reads a value back to the host."""
        if len(views) != 2 * len(self.stages):
            raise ValueError(f"{self.name}: expected {2 * len(self.stages)} views ({len(self.stages)} pairs), got {len(views)}")
        z = self.online(views, params, self.view_stages(), self.batching)
        p = self.predict(z) if self.uses_predictor else None
        t = self.targets(views, params) if self.uses_target else None
        z, p, t = _fp32(z), _fp32(p), _fp32(t)
        total = z[0].new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        with torch.autocast(z[0].device.type, enabled=False):
            for k, (s, w) in enumerate(zip(self.stages, self.weights)):
                sl = slice(2 * k, 2 * k + 2)
                loss = self.pair_loss(k, s, z[sl], p[sl] if p else None, t[sl] if t else None)
                logs[f"loss/stage{s}"] = loss.detach()
                total = total + w * loss
        return total, logs


def _fp32(xs: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """Half-precision tensors (autocast's outputs) in fp32; fp32/fp64 as they are."""
    return None if xs is None else [x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in xs]
