"""Sampling kernels (Langevin, MALA, HMC, NUTS, random walk, tempering, SVGD), sample, diagnostics.

A kernel has ``init(y0, energy, x=None) -> State`` and
``step(state, energy, x=None, *, generator) -> (State, Info)``; :func:`sample` runs one.
"""

from ebmlab.samplers import diagnostics
from ebmlab.samplers.adaptation import DualAveraging
from ebmlab.samplers.block_gibbs import BlockGibbs, BlockGibbsState
from ebmlab.samplers.driver import Chain, sample
from ebmlab.samplers.gibbs_sampler import Gibbs, GibbsState
from ebmlab.samplers.gibbs_with_gradients import GibbsWithGradients
from ebmlab.samplers.hmc import HMC
from ebmlab.samplers.integrators import langevin_step, leapfrog, leapfrog_step, reflect
from ebmlab.samplers.langevin import Langevin
from ebmlab.samplers.mala import MALA
from ebmlab.samplers.metropolis import metropolis_accept
from ebmlab.samplers.nuts import NUTS
from ebmlab.samplers.parallel_tempering import ParallelTempering, PTInfo, PTState
from ebmlab.samplers.random_walk import RandomWalkMetropolis, RandomWalkState
from ebmlab.samplers.state import HMCInfo, Info, NUTSInfo, State
from ebmlab.samplers.svgd import SVGD

# Registry of the kernels: a new sampler is one file plus one line here.
KERNELS = {
    "langevin": Langevin,
    "mala": MALA,
    "hmc": HMC,
    "nuts": NUTS,
    "random_walk": RandomWalkMetropolis,
    "parallel_tempering": ParallelTempering,  # wraps a base kernel: PT(kernel, betas)
    "svgd": SVGD,  # interacting particles, deterministic
}

# Kernels for discrete y (binary, categorical, RBM visibles): their contract suite is
# tests/samplers/test_discrete_kernels.py (the continuous suite does not apply to them).
DISCRETE_KERNELS = {
    "block_gibbs": BlockGibbs,
    "gibbs": Gibbs,
    "gibbs_with_gradients": GibbsWithGradients,
}

__all__ = [
    "Langevin",
    "MALA",
    "HMC",
    "NUTS",
    "RandomWalkMetropolis",
    "ParallelTempering",
    "SVGD",
    "PTState",
    "PTInfo",
    "BlockGibbs",
    "Gibbs",
    "GibbsWithGradients",
    "KERNELS",
    "DISCRETE_KERNELS",
    "BlockGibbsState",
    "GibbsState",
    "sample",
    "Chain",
    "State",
    "Info",
    "HMCInfo",
    "NUTSInfo",
    "RandomWalkState",
    "DualAveraging",
    "diagnostics",
    "leapfrog",
    "leapfrog_step",
    "langevin_step",
    "reflect",
    "metropolis_accept",
]


def __getattr__(name: str) -> object:
    # ReplayBuffer moved to ebmlab.training (it serves training, not sampling); the old path
    # keeps working, lazily, so that samplers never imports training at import time.
    if name == "ReplayBuffer":
        import warnings

        from ebmlab.training.replay import ReplayBuffer

        warnings.warn("ebmlab.samplers.ReplayBuffer moved to ebmlab.training.ReplayBuffer",
                      DeprecationWarning, stacklevel=2)
        return ReplayBuffer
    raise AttributeError(f"module 'ebmlab.samplers' has no attribute {name!r}")
