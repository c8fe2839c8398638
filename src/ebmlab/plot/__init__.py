"""Plots of energies, minima, chains and distributions (the only module importing matplotlib).

``import ebmlab`` does not import this module; ``ebmlab.plot`` is loaded on first use.
"""

from ebmlab.plot.figure import save, subplots
from ebmlab.plot.landscape import conditional, landscape, modes, trajectories

__all__ = ["landscape", "modes", "trajectories", "conditional", "subplots", "save"]
