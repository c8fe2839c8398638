"""Plots of energies, minima, chains and distributions (the only module importing matplotlib).

``import ebmlab`` does not import this module; ``ebmlab.plot`` is loaded on first use.
"""

from ebmlab.plot.figure import save, subplots
from ebmlab.plot.gibbs import density, density_vs_beta, samples_on_density
from ebmlab.plot.images import energy_trace, image_grid, ood_histogram, reliability_diagram
from ebmlab.plot.implicit import implicit_modes, particle_trajectories
from ebmlab.plot.inference import coverage
from ebmlab.plot.landscape import conditional, landscape, modes, trajectories
from ebmlab.plot.latent import (
    energy_vs_z,
    free_energy_map,
    free_energy_vs_beta,
    horn_surface,
    manifold,
    responsibilities,
)
from ebmlab.plot.samplers import chains, histogram_vs_exact, swap_rates, trace

__all__ = [
    "coverage",
    "free_energy_map",
    "energy_vs_z",
    "free_energy_vs_beta",
    "manifold",
    "responsibilities",
    "horn_surface",
    "landscape",
    "modes",
    "trajectories",
    "conditional",
    "subplots",
    "save",
    "density",
    "density_vs_beta",
    "samples_on_density",
    "chains",
    "histogram_vs_exact",
    "trace",
    "swap_rates",
    "image_grid",
    "energy_trace",
    "reliability_diagram",
    "ood_histogram",
    "implicit_modes",
    "particle_trajectories",
]
