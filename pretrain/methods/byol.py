"""BYOL: predictor on the online side, targets from an EMA copy of the online network (decay 0.99)."""
from pretrain.methods.base import HierSiamese
from pretrain.methods.losses import byol_loss


class BYOL(HierSiamese):
    name = "byol"
    uses_predictor = True
    uses_target = True

    def pair_loss(self, k, s, z, p, t):
        return byol_loss(p[0], p[1], t[0], t[1])
