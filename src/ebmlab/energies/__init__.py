"""Ready-made energies: analytic ones with closed-form gradients, and neural ones."""

from ebmlab.energies.analytic import Banana, DoubleWell, GaussianMixture, Quadratic
from ebmlab.energies.course import Ellipse, Horn
from ebmlab.energies.neural import MLPEnergy

__all__ = ["Quadratic", "GaussianMixture", "DoubleWell", "Banana", "MLPEnergy", "Ellipse", "Horn"]
