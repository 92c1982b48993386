"""Projection/prediction MLPs, the intermediate-stage heads and the augmentation embedding.

The default shapes are the authors' (`zhangjb416/Hierarchical-Augmentation`, `resnet_imagenet.py`
and `simsiam_base/builder.py`); tests/test_fidelity.py pins their parameter counts.
"""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out: int, num_layers: int = 2, last_bn: bool = True,
        last_bn_affine: bool = True, hidden_bn: bool = True) -> nn.Sequential:
    """Linear(+BN)-ReLU blocks then a last Linear (+ BN when `last_bn`). (B, in_dim) -> (B, out).

    Linear layers carry a bias except the last one when a BN follows it (the authors' projector and
    predictor); `hidden_bn=False` gives MoCo v2's Linear-ReLU-Linear head."""
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden] * (num_layers - 1) + [out]
    for k in range(num_layers):
        last = k == num_layers - 1
        layers.append(nn.Linear(dims[k], dims[k + 1], bias=not (last and last_bn)))
        if not last:
            layers += [nn.BatchNorm1d(dims[k + 1])] if hidden_bn else []
            layers.append(nn.ReLU(inplace=True))
        elif last_bn:
            layers.append(nn.BatchNorm1d(out, affine=last_bn_affine))
    return nn.Sequential(*layers)


def separable_block(cin: int, cout: int, stride: int = 2) -> nn.Sequential:
    """Two units of depthwise 3×3 + pointwise 1×1 + BN + ReLU; only the first depthwise conv has the
    stride, the second pointwise conv sets the channels. (B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
    def unit(c_in: int, c_out: int, s: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_in, 3, s, 1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*unit(cin, cin, stride), *unit(cin, cout, 1))


class StageHead(nn.Module):
    """Head on ResNet stage `stage` (1..3), the authors' design; discarded after pretraining.

    reduce: 1×1 conv (no bias) to `reduce` channels, BN, ReLU
    gate:   separable block (stride 2) -> bilinear upsampling ×2 -> BN -> sigmoid; multiplies the features
    down:   one separable block (stride 2) per remaining stage, each doubling the channels
    expand: 1×1 conv (no bias) to `out_dim`, BN, ReLU, global average pooling
    (B, C_in, H, W) -> (B, out_dim). Authors: reduce 64/128/256 -> 512 after the doublings.
    """

    def __init__(self, in_channels: int, reduce: int, stage: int, out_dim: int, attention: bool = True):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, reduce, 1, bias=False), nn.BatchNorm2d(reduce), nn.ReLU(inplace=True))
        self.gate = nn.Sequential(separable_block(reduce, reduce), nn.Upsample(scale_factor=2, mode="bilinear"),
                                  nn.BatchNorm2d(reduce), nn.Sigmoid()) if attention else None
        c, down = reduce, []
        for _ in range(4 - stage):
            down.append(separable_block(c, 2 * c))
            c *= 2
        self.down = nn.Sequential(*down)
        self.expand = nn.Sequential(nn.Conv2d(c, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

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
        self.net = nn.Sequential(nn.Linear(len(index), dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        return self.net(params[:, self.index])
