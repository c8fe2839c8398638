r"""Loss functionals that shape an energy: low on data, high elsewhere.

Every loss is a pure function with the reduction as an argument (``"mean"``, ``"sum"`` or
``"none"``). Most take energies computed by the caller; the score-matching losses and the
gradient penalty need derivatives in ``y`` and take ``(energy, y, x=None)``.

``LOSSES`` maps a name to its function (the config-driven trainer looks losses up there) and
``LOSS_INPUTS`` names the positional inputs each one needs, read from its signature (the
parameters named in ``INPUTS``):

- ``("e_pos",)``: energies of the data;
- ``("e_pos", "e_min")``: and the minimum energy found by inference (or a set of energies);
- ``("e_pos", "e_neg")``: and energies of negatives, shape ``S`` or ``S + (K,)``;
- ``("e_pos", "e_all")``: and energies of a set of answers ``S + (K,)`` (NLL, MEE);
- ``("e_data", "e_noise", "log_q_data", "log_q_noise")``: NCE with a known noise density;
- ``("energy", "y", "x")``: the energy itself, the data and the conditioning input.
"""

import inspect
from collections.abc import Callable

from torch import Tensor

from ebmlab.losses.discrepancy import energy_discrepancy
from ebmlab.losses.likelihood import contrastive_divergence, mee, nll
from ebmlab.losses.margin import (
    energy_loss,
    hinge,
    log_loss,
    lvq2,
    mce,
    perceptron,
    square_exp,
    square_square,
)
from ebmlab.losses.nce import info_nce, nce
from ebmlab.losses.recovery import diffusion_recovery_likelihood
from ebmlab.losses.regularizers import energy_gap, energy_l2, gradient_penalty, spectral_norm
from ebmlab.losses.score import (
    denoising_score_matching,
    exact_score_matching,
    sliced_score_matching,
)
from ebmlab.losses.structured import crf_nll, structured_hinge, structured_perceptron

LOSSES = {
    fn.__name__: fn
    for fn in (
        energy_loss,
        perceptron,
        hinge,
        log_loss,
        lvq2,
        mce,
        square_square,
        square_exp,
        nll,
        mee,
        contrastive_divergence,
        nce,
        info_nce,
        exact_score_matching,
        sliced_score_matching,
        denoising_score_matching,
        diffusion_recovery_likelihood,
        energy_discrepancy,
    )
}

# Losses of linear-chain energies (eb.energies.Chain), called as fn(energy, y, x) by eb.fit;
# kept apart from LOSSES, whose contract suite exercises generic continuous energies.
STRUCTURED_LOSSES = {
    fn.__name__: fn for fn in (structured_perceptron, structured_hinge, crf_nll)
}

REGULARIZERS = {
    "energy_l2": energy_l2, "energy_gap": energy_gap, "gradient_penalty": gradient_penalty,
}

# The inputs a loss may name: a loss's parameters of these names are what the training loop
# supplies (``eb.training.resolve_loss``); its other parameters are options.
INPUTS = (
    "e_pos", "e_data", "e_neg", "e_min", "e_noise", "e_all", "log_q_data", "log_q_noise",
    "energy", "y", "x",
)


def _inputs(fn: Callable[..., Tensor]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p in INPUTS)


# Derived from the signatures, so a new loss is one file plus one line in LOSSES.
LOSS_INPUTS: dict[str, tuple[str, ...]] = {name: _inputs(fn) for name, fn in LOSSES.items()}

__all__ = [
    "LOSSES",
    "LOSS_INPUTS",
    "INPUTS",
    "REGULARIZERS",
    "STRUCTURED_LOSSES",
    "structured_perceptron",
    "structured_hinge",
    "crf_nll",
    "energy_loss",
    "perceptron",
    "hinge",
    "log_loss",
    "lvq2",
    "mce",
    "square_square",
    "square_exp",
    "nll",
    "mee",
    "contrastive_divergence",
    "nce",
    "info_nce",
    "exact_score_matching",
    "sliced_score_matching",
    "denoising_score_matching",
    "diffusion_recovery_likelihood",
    "energy_discrepancy",
    "energy_l2",
    "energy_gap",
    "gradient_penalty",
    "spectral_norm",
]
