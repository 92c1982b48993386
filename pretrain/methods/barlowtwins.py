"""Barlow Twins: cross-correlation of the two views' batch-standardised projections towards identity."""
from torch import nn

from pretrain.methods.base import HierSiamese
from pretrain.methods.losses import barlow_twins_loss


class BarlowTwins(HierSiamese):
    name = "barlowtwins"

    def __init__(self, *args, lambd: float = 3.9e-3, scale: float = 1 / 32, **kwargs):
        super().__init__(*args, **kwargs)
        self.lambd, self.scale = lambd, scale
        out = kwargs["proj"]["out"]
        # affine-free BN standardises over the (global, once synchronised) batch
        self.standardize = nn.ModuleDict({str(s): nn.BatchNorm1d(out, affine=False) for s in self.stages})

    def pair_loss(self, k, s, z, p, t):
        bn = self.standardize[str(s)]
        return barlow_twins_loss(bn(z[0]), bn(z[1]), self.lambd, self.scale, standardize=False, distributed=True)
