"""Built-in data sets, all generated in code (nothing is downloaded).

``DATASETS`` maps a name to its generator ``fn(num, ..., generator=None, dtype=None,
device=None)``; the ``ebmlab train`` config looks its ``[data]`` table up there. A new data set is
one function plus one line in ``DATASETS``.
"""

from ebmlab.data.course import ellipse, horn, horn_radii
from ebmlab.data.digits import digits
from ebmlab.data.regression import (
    GUSTAFSSON_OPTIMAL_NLL,
    circle,
    gustafsson_ds1,
    gustafsson_ds1_log_prob,
    gustafsson_ds2,
    gustafsson_ds2_log_prob,
    step_function,
)
from ebmlab.data.toy import (
    checkerboard,
    eight_gaussians,
    multimodal_1d,
    rings,
    two_branch,
    two_moons,
)

DATASETS = {
    fn.__name__: fn
    for fn in (
        eight_gaussians, rings, checkerboard, two_moons, multimodal_1d, two_branch, ellipse, horn,
        gustafsson_ds1, gustafsson_ds2, step_function, circle,
    )
}

__all__ = [
    "DATASETS",
    "eight_gaussians",
    "rings",
    "checkerboard",
    "two_moons",
    "multimodal_1d",
    "two_branch",
    "ellipse",
    "horn",
    "horn_radii",
    "digits",
    "gustafsson_ds1",
    "gustafsson_ds2",
    "gustafsson_ds1_log_prob",
    "gustafsson_ds2_log_prob",
    "GUSTAFSSON_OPTIMAL_NLL",
    "step_function",
    "circle",
]
