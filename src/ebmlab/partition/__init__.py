r"""Estimators of the log partition function :math:`\log Z = \log\int e^{-\beta F(x, y)}\,dy`.

Each estimator is a small object holding its settings, with
``log_partition(energy, x=None, *, beta, domain, generator) -> Estimate``:

- :class:`Grid`: midpoint quadrature (dimension ≤ 3), deterministic, chunked.
- :class:`Importance`: importance sampling from a uniform or any proposal, with a
  delta-method standard error and the effective sample size.
- :class:`AIS`: annealed importance sampling on the geometric path from a uniform or
  Gaussian base, with any sampler kernel (:class:`RandomWalkMetropolis` by default).
"""

from ebmlab.partition.ais import AIS, TemperedEnergy, schedule
from ebmlab.partition.estimate import Estimate
from ebmlab.partition.grid import Grid, GridStatistics
from ebmlab.partition.importance import Importance
from ebmlab.partition.metropolis import MetropolisInfo, MetropolisState, RandomWalkMetropolis

__all__ = [
    "Estimate",
    "Grid",
    "GridStatistics",
    "Importance",
    "AIS",
    "TemperedEnergy",
    "schedule",
    "RandomWalkMetropolis",
    "MetropolisState",
    "MetropolisInfo",
]
