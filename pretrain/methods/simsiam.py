"""SimSiam: predictor + stop-gradient, ½·D(p1, sg(z2)) + ½·D(p2, sg(z1)) per stage."""
from ..losses import simsiam_loss
from .base import HierSiamese


class SimSiam(HierSiamese):
    name = "simsiam"
    uses_predictor = True

    def pair_loss(self, k, s, z, p, t):
        return simsiam_loss(p[0], p[1], z[0], z[1])
