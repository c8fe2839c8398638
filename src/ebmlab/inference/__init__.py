"""Inference: batched multi-start solvers, merging of minima, and discrete search."""

from ebmlab.inference.adam import Adam
from ebmlab.inference.annealed_langevin import AnnealedLangevin
from ebmlab.inference.dfo import DFO
from ebmlab.inference.discrete import argmin_discrete
from ebmlab.inference.gradient_descent import GradientDescent
from ebmlab.inference.hybrid import Hybrid
from ebmlab.inference.infer import infer
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.multistart import SOLVERS, minimize
from ebmlab.inference.result import Inference
from ebmlab.inference.solver import Objective, Solver
from ebmlab.inference.unrolling import unroll

__all__ = [
    "infer",
    "unroll",
    "minimize",
    "argmin_discrete",
    "Inference",
    "Objective",
    "Solver",
    "Adam",
    "GradientDescent",
    "LBFGS",
    "Hybrid",
    "DFO",
    "AnnealedLangevin",
    "SOLVERS",
]
