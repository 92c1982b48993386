"""The baselines, each a small module on the shared hierarchical Siamese wrapper."""
from .barlowtwins import BarlowTwins
from .base import HierSiamese
from .byol import BYOL
from .mocov2 import MoCoV2
from .simsiam import SimSiam

METHODS = {m.name: m for m in (SimSiam, BYOL, BarlowTwins, MoCoV2)}

__all__ = ["METHODS", "HierSiamese", "SimSiam", "BYOL", "BarlowTwins", "MoCoV2"]
