r"""Loss functionals that shape an energy: low on data, high elsewhere.

Every loss is a pure function with the reduction as an argument (``"mean"``, ``"sum"`` or
``"none"``). Most take energies computed by the caller; the score-matching losses and the
gradient penalty need derivatives in ``y`` and take ``(energy, y, x=None)``.

``LOSSES`` maps a name to its function (the config-driven trainer looks losses up there) and
``LOSS_INPUTS`` names the positional inputs each one needs:

- ``("e_pos",)``: energies of the data;
- ``("e_pos", "e_min")``: and the minimum energy found by inference (or a set of energies);
- ``("e_pos", "e_neg")``: and energies of negatives, shape ``S`` or ``S + (K,)``;
- ``("e_pos", "e_all")``: and energies of a set of answers ``S + (K,)`` (NLL, MEE);
- ``("e_data", "e_noise", "log_q_data", "log_q_noise")``: NCE with a known noise density;
- ``("energy", "y", "x")``: the energy itself, the data and the conditioning input.
"""

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
from ebmlab.losses.regularizers import energy_l2, gradient_penalty, spectral_norm
from ebmlab.losses.score import (
    denoising_score_matching,
    exact_score_matching,
    sliced_score_matching,
)

_PAIR = ("e_pos", "e_neg")
_SET = ("e_pos", "e_all")
_SCORE = ("energy", "y", "x")

LOSS_INPUTS: dict[str, tuple[str, ...]] = {
    "energy_loss": ("e_pos",),
    "perceptron": ("e_pos", "e_min"),
    "hinge": _PAIR,
    "log_loss": _PAIR,
    "lvq2": _PAIR,
    "mce": _PAIR,
    "square_square": _PAIR,
    "square_exp": _PAIR,
    "nll": _SET,
    "mee": _SET,
    "contrastive_divergence": _PAIR,
    "nce": ("e_data", "e_noise", "log_q_data", "log_q_noise"),
    "info_nce": _PAIR,
    "exact_score_matching": _SCORE,
    "sliced_score_matching": _SCORE,
    "denoising_score_matching": _SCORE,
}

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
    )
}

REGULARIZERS = {"energy_l2": energy_l2, "gradient_penalty": gradient_penalty}

__all__ = [
    "LOSSES",
    "LOSS_INPUTS",
    "REGULARIZERS",
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
    "energy_l2",
    "gradient_penalty",
    "spectral_norm",
]
