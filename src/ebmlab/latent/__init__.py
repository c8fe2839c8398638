r"""Latent variables: the sets z ranges over, the free energy that eliminates z, the manifold.

A latent-variable energy :math:`E(x, y, z)` becomes an ordinary energy of ``(x, y)`` once z is
eliminated, by minimisation (zero temperature) or by marginalisation (inverse temperature β):

.. math::
    F_\infty(x, y) = \min_z E(x, y, z), \qquad
    F_\beta(x, y) = -\frac1\beta \log \int e^{-\beta E(x, y, z)}\, dz .
"""

from ebmlab.latent.discrete_sets import Binary, Categorical
from ebmlab.latent.free_energy import FreeEnergy
from ebmlab.latent.manifold import manifold
from ebmlab.latent.minimize import Minimize
from ebmlab.latent.sets import Discrete, Grid, LatentSet, MonteCarlo

__all__ = [
    "LatentSet",
    "Grid",
    "Discrete",
    "MonteCarlo",
    "Binary",
    "Categorical",
    "Minimize",
    "FreeEnergy",
    "manifold",
]
