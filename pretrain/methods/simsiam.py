"""SimSiam: predictor + stop-gradient, ½·D(p1, sg(z2)) + ½·D(p2, sg(z1)) per stage."""
from pretrain.methods.base import HierSiamese
from pretrain.methods.losses import simsiam_loss


class SimSiam(HierSiamese):
    name = "simsiam"
    uses_predictor = True

    def pair_loss(self, k, s, z, p, t):
        return simsiam_loss(p[0], p[1], z[0], z[1])
