"""Projection/prediction MLPs, the intermediate-stage heads and the augmentation embedding."""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out: int, num_layers: int = 2, last_bn: bool = True,
        last_bn_affine: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a last Linear (+ BN when `last_bn`). (B, in_dim) -> (B, out)."""
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden] * (num_layers - 1) + [out]
    for k in range(num_layers):
        last = k == num_layers - 1
        layers.append(nn.Linear(dims[k], dims[k + 1], bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(dims[k + 1]), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(out, affine=last_bn_affine))
    return nn.Sequential(*layers)


class SeparableConv(nn.Sequential):
    """Depthwise k×k conv (stride s) + pointwise 1×1 conv: (B, C, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, k: int = 3):
        super().__init__(
            nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class StageHead(nn.Module):
    """Head on an intermediate ResNet stage (the authors' design, discarded after pretraining).

    1×1 conv reduce -> sigmoid attention gate (separable conv stride 2 -> upsample ×2 -> BN -> sigmoid)
    multiplying the features -> `num_down` stride-2 separable convs (to the last stage's resolution)
    -> 1×1 conv to `out_dim` -> BN -> ReLU -> global average pool.
    (B, C_in, H, W) -> (B, out_dim)
    """

    def __init__(self, in_channels: int, reduce: int, num_down: int, out_dim: int, attention: bool = True):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, reduce, 1, bias=False), nn.BatchNorm2d(reduce), nn.ReLU(inplace=True))
        self.gate = nn.Sequential(SeparableConv(reduce, reduce, stride=2), nn.Upsample(scale_factor=2, mode="nearest"),
                                  nn.BatchNorm2d(reduce), nn.Sigmoid()) if attention else None
        down: list[nn.Module] = []
        for _ in range(num_down):
            down += [SeparableConv(reduce, reduce, stride=2), nn.BatchNorm2d(reduce), nn.ReLU(inplace=True)]
        self.down = nn.Sequential(*down)
        self.expand = nn.Sequential(nn.Conv2d(reduce, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        if self.gate is not None:
            g = self.gate(x)
            x = x * g[..., : x.shape[-2], : x.shape[-1]]  # odd sizes: the upsampled gate is one pixel larger
        x = self.expand(self.down(x))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class AugEmbedding(nn.Module):
    """Embeds selected augmentation parameters: Linear(k -> dim) + BN + ReLU. (B, PARAM_DIM) -> (B, dim)."""

    def __init__(self, index: list[int], dim: int = 512):
        super().__init__()
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.net = nn.Sequential(nn.Linear(len(index), dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        return self.net(params[:, self.index])
