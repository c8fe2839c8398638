r"""Estimators of the log partition function :math:`\log Z = \log\int e^{-\beta F(x, y)}\,dy`.

Each estimator is a small object holding its settings, with
``log_partition(energy, x=None, *, beta, domain, generator) -> Estimate``:

- :class:`Grid`: midpoint quadrature (dimension ≤ 3), deterministic, chunked.
- :class:`Importance`: importance sampling from a uniform or any proposal, with a
  delta-method standard error and the effective sample size.
- :class:`Enumerate`: exact sums over a discrete domain (``eb.Binary``, ``eb.Categorical``).
- :class:`AIS`: annealed importance sampling on the geometric path from a uniform or
  Gaussian base on a ladder of equal thermodynamic length (``schedule="adaptive"``):
  gradient transitions with persistent momentum (``"ghmc"``) by default, MALA, HMC,
  Crank-Nicolson Langevin around the pilot's Gaussian (``"pcnl"``), the random walk
  (:class:`RandomWalkMetropolis`) or any sampler kernel;
  ``bidirectional=True`` adds reverse-AIS lower and upper bounds.

``ESTIMATORS`` maps the names ``eb.Gibbs(..., estimator=name)`` accepts to the classes;
:class:`Estimator` and :class:`SamplingEstimator` are the protocols they follow.
``RandomWalkMetropolis`` lives in :mod:`ebmlab.samplers` and is re-exported here.
"""

from ebmlab.partition.ais import AIS
from ebmlab.partition.enumerate import Enumerate
from ebmlab.partition.estimate import Estimate, Estimator, SamplingEstimator
from ebmlab.partition.grid import Grid, GridStatistics
from ebmlab.partition.importance import Importance
from ebmlab.partition.path import TemperedEnergy, schedule
from ebmlab.samplers.random_walk import RandomWalkMetropolis, RandomWalkState
from ebmlab.samplers.state import Info

# The kernel's former record names (it moved to ebmlab.samplers): importable, not advertised.
MetropolisState = RandomWalkState
MetropolisInfo = Info

# Registry of the estimators, by the name eb.Gibbs accepts (a new one is a file plus a line).
ESTIMATORS: dict[str, type[Estimator]] = {"grid": Grid, "importance": Importance, "ais": AIS}
ESTIMATORS["enumerate"] = Enumerate  # exact sums over eb.Binary / eb.Categorical domains

__all__ = [
    "Estimate",
    "Estimator",
    "SamplingEstimator",
    "ESTIMATORS",
    "Grid",
    "GridStatistics",
    "Importance",
    "AIS",
    "Enumerate",
    "TemperedEnergy",
    "schedule",
    "RandomWalkMetropolis",
]
