"""The online (or target) network: ResNet + intermediate-stage heads + augmentation embeddings + projectors.

For a view contrasted at stage s:
    feature f = StageHead_s(backbone up to s)      (s < 4)   or   avgpool(backbone up to 4)   (s = 4)
    expanded  = [f, AugEmbedding_s(params)]        when expanded views are on at s ("what to contrast")
    z         = projector_s(expanded)
"""
from __future__ import annotations

import torch
from torch import nn

from pretrain.models.backbones import StagedResNet
from pretrain.models.heads import AugEmbedding, StageHead, mlp
from pretrain.models.viewbn import make_per_view, per_view_stats
from pretrain.transforms.augment import PARAM_SLICES


def param_index(names: list[str]) -> list[int]:
    """Positions in the parameter vector of the named parameter groups ("jitter" = the 4 factors only)."""
    index: list[int] = []
    for n in names:
        if n == "jitter":
            index += [8, 9, 10, 11]
        elif n in PARAM_SLICES:
            sl = PARAM_SLICES[n]
            index += list(range(sl.start + (1 if n == "crop" else 0), sl.stop))  # crop: its flag is always 1
        else:
            raise ValueError(f"unknown augmentation parameter group {n!r}; choose from {list(PARAM_SLICES)}")
    return index


class Encoder(nn.Module):
    """(views, params) -> projections, each view stopping at its pair's stage.

    Args:
        arch: torchvision ResNet name.
        stages: the stages (1..4) that views are contrasted at.
        proj: kwargs of `heads.mlp` for every stage's projector (hidden, out, num_layers, ...).
        head_reduce: channels of the 1×1 reduction of the stage-1..3 heads.
        attention: use the stage heads' sigmoid attention gate.
        expand_stages / expand_params / expand_dim: the augmentation embedding ("what to contrast").
        zero_init_residual: torchvision's option for the backbone.
    """

    def __init__(self, arch: str, stages: list[int], proj: dict, head_reduce=(64, 128, 256), attention: bool = True,
                 expand_stages=(), expand_params=("jitter",), expand_dim: int = 512, zero_init_residual: bool = True):
        super().__init__()
        self.backbone = StagedResNet(arch, zero_init_residual)
        width = self.backbone.num_features
        self.stages = sorted(set(stages))
        self.heads = nn.ModuleDict({
            str(s): StageHead(self.backbone.channels[s - 1], head_reduce[s - 1], s, width, attention)
            for s in self.stages if s < 4})
        index = param_index(list(expand_params))
        self.embeds = nn.ModuleDict({str(s): AugEmbedding(index, expand_dim) for s in expand_stages if s in self.stages})
        self.projectors = nn.ModuleDict({
            str(s): mlp(width + (expand_dim if str(s) in self.embeds else 0), **proj) for s in self.stages})
        make_per_view(self)

    def head(self, fmap: torch.Tensor, s: int, params: torch.Tensor) -> torch.Tensor:
        """Stage-s feature map (B, C, h, w) + params (B, PARAM_DIM) -> projection (B, D)."""
        f = self.heads[str(s)](fmap) if s < 4 else torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        if str(s) in self.embeds:
            f = torch.cat([f, self.embeds[str(s)](params)], 1)
        return self.projectors[str(s)](f)

    def forward(self, views: list[torch.Tensor], params: list[torch.Tensor], stages: list[int],
                batching: str = "view") -> list[torch.Tensor]:
        """Projections (B, D) of every view; view k stops at stages[k].

        batching: "view" runs each view alone (the authors' code), "pair" runs the two views of a
        pair as one batch, "shared" pushes all views through the shared early stages together and
        lets each leave at its stage. In every mode each BatchNorm layer uses per-view statistics
        (`viewbn`), so the three give the same loss, gradients and running statistics."""
        if batching == "view":
            return [self.head(self.backbone(x, s), s, p) for x, p, s in zip(views, params, stages)]
        if batching == "pair":
            out: list[torch.Tensor] = []
            for k in range(0, len(views), 2):
                s, n = stages[k], views[k].shape[0]
                with per_view_stats((k, k + 1)):
                    z = self.head(self.backbone(torch.cat(views[k:k + 2]), s), s, torch.cat(params[k:k + 2]))
                out += list(z.split(n))
            return out
        if batching == "shared":
            n = views[0].shape[0]
            alive = sorted(range(len(views)), key=lambda k: -stages[k])  # deepest first; leavers at the tail
            with per_view_stats(alive):
                x = self.backbone.stem(torch.cat([views[k] for k in alive]))
            out_by_view: dict[int, torch.Tensor] = {}
            for s in range(1, 5):
                with per_view_stats(alive):
                    x = self.backbone.layer(s)(x)
                leaving = [k for k in alive if stages[k] == s]
                if leaving:
                    m = len(alive) - len(leaving)
                    with per_view_stats(leaving):
                        z = self.head(x[m * n:], s, torch.cat([params[k] for k in leaving]))
                    for j, k in enumerate(leaving):
                        out_by_view[k] = z[j * n:(j + 1) * n]
                    x, alive = x[: m * n], alive[:m]
                if not alive:
                    break
            return [out_by_view[k] for k in range(len(views))]
        raise ValueError(f"batching must be 'view', 'pair' or 'shared', got {batching!r}")
