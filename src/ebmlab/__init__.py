"""ebmlab: Energy-Based Models on PyTorch."""

from ebmlab import energies
from ebmlab.domain import Box
from ebmlab.energy import Energy, FunctionEnergy, LatentEnergy
from ebmlab.inference import Inference, argmin_discrete, infer

__version__ = "0.1.0"

__all__ = [
    "Energy",
    "LatentEnergy",
    "FunctionEnergy",
    "energies",
    "Box",
    "infer",
    "argmin_discrete",
    "Inference",
]
