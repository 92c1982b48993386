"""Plain torchvision ResNets with a forward that stops after a given stage.

The backbone keeps torchvision's parameter names (`conv1`, `bn1`, `layer1`..`layer4`), so a
checkpoint's `backbone.*` keys are a torchvision state_dict and the converter can read them.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


class StagedResNet(nn.Module):
    """torchvision ResNet without `fc`; `forward(x, stage)` runs stem + layer1..layer{stage}.

    x: (B, 3, H, W) -> stage 1..4 feature map (B, C_s, H/2^(s+1), W/2^(s+1)), C_s = `channels[s-1]`.
    """

    def __init__(self, arch: str = "resnet50", zero_init_residual: bool = True):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown backbone {arch!r}; choose from {ARCHS}")
        net = getattr(models, arch)(weights=None, zero_init_residual=zero_init_residual)
        self.arch = arch
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 4 if arch in ("resnet50", "resnet101") else 1
        self.channels = tuple(c * expansion for c in (64, 128, 256, 512))
        self.num_features = self.channels[-1]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def layer(self, s: int) -> nn.Module:
        return (self.layer1, self.layer2, self.layer3, self.layer4)[s - 1]

    def forward(self, x: torch.Tensor, stage: int = 4, start: int = 0) -> torch.Tensor:
        """Run stages start+1..stage on x (x is the image when start == 0, else the stage-`start` map)."""
        if start == 0:
            x = self.stem(x)
        for s in range(max(start, 0) + 1, stage + 1):
            x = self.layer(s)(x)
        return x
