"""The baselines, each a small module on the shared hierarchical Siamese wrapper."""
from pretrain.methods.barlowtwins import BarlowTwins
from pretrain.methods.base import HierSiamese
from pretrain.methods.byol import BYOL
from pretrain.methods.mocov2 import MoCoV2
from pretrain.methods.simsiam import SimSiam

METHODS = {m.name: m for m in (SimSiam, BYOL, BarlowTwins, MoCoV2)}

__all__ = ["METHODS", "HierSiamese", "SimSiam", "BYOL", "BarlowTwins", "MoCoV2"]
