"""ebmlab: Energy-Based Models on PyTorch."""

from ebmlab import data, energies, envs, evaluate, losses, metrics, partition, training
from ebmlab.discrete_domain import Binary, Categorical
from ebmlab.domain import Box
from ebmlab.energy import Energy, FunctionEnergy, LatentEnergy
from ebmlab.gibbs import Gibbs
from ebmlab.inference import Inference, argmin_discrete, infer
from ebmlab.io import load_energy, load_run, save_energy
from ebmlab.latent import FreeEnergy, manifold
from ebmlab.partition import Estimate
from ebmlab.samplers import diagnostics, sample
from ebmlab.training import History, fit
from ebmlab.warnings import InferenceWarning, SamplerWarning

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ebmlab.plot imports matplotlib, so it is loaded only when first used.
    if name == "plot":
        import importlib

        return importlib.import_module("ebmlab.plot")
    # ImplicitRegressor needs scikit-learn (an optional extra): imported on first use.
    if name == "ImplicitRegressor":
        from ebmlab.estimators import ImplicitRegressor

        return ImplicitRegressor
    raise AttributeError(f"module 'ebmlab' has no attribute {name!r}")

__all__ = [
    "Energy",
    "LatentEnergy",
    "FunctionEnergy",
    "energies",
    "envs",
    "ImplicitRegressor",
    "metrics",
    "evaluate",
    "data",
    "losses",
    "Box",
    "Binary",
    "Categorical",
    "infer",
    "argmin_discrete",
    "Inference",
    "plot",
    "training",
    "fit",
    "History",
    "latent",
    "FreeEnergy",
    "manifold",
    "samplers",
    "sample",
    "diagnostics",
    "Gibbs",
    "Estimate",
    "partition",
    "InferenceWarning",
    "SamplerWarning",
    "load_run",
    "save_energy",
    "load_energy",
]
