"""Ready-made energies: analytic ones with closed-form gradients, and neural ones.

``ENERGIES`` maps a name to its class; the ``ebmlab train`` config looks its ``[energy]`` table
up there. A new energy is one file plus one line in ``ENERGIES``.
"""

from ebmlab.energies.analytic import Banana, DoubleWell, GaussianMixture, Quadratic
from ebmlab.energies.chain import Chain
from ebmlab.energies.classifier import ClassifierEnergy, InputEnergy
from ebmlab.energies.conv import ConvEnergy, ConvNet
from ebmlab.energies.course import Ellipse, Horn
from ebmlab.energies.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.energies.neural import MLPEnergy
from ebmlab.energies.rbm import RBM, RBMFreeEnergy

ENERGIES: dict[str, type] = {
    "quadratic": Quadratic,
    "gaussian_mixture": GaussianMixture,
    "double_well": DoubleWell,
    "banana": Banana,
    "mlp": MLPEnergy,
    "ellipse": Ellipse,
    "horn": Horn,
    "conv": ConvEnergy,
}

__all__ = [
    "ENERGIES",
    "Quadratic",
    "GaussianMixture",
    "DoubleWell",
    "Banana",
    "MLPEnergy",
    "Ellipse",
    "Horn",
    "ClassifierEnergy",
    "InputEnergy",
    "ConvEnergy",
    "ConvNet",
    "RBM",
    "GaussianBernoulliRBM",
    "RBMFreeEnergy",
    "Chain",
]
