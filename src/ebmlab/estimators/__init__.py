r"""Scikit-learn estimators: ``ImplicitRegressor``, :math:`\hat y = \arg\min_y E(x, y)`.

``ebmlab.estimators.implicit`` holds the estimator, ``ebmlab.estimators._common`` its parts
(the scaled energy, the counter-examples, the maximum-likelihood grid, the argument checks).
"""

from ebmlab.estimators.implicit import INFERENCE, LOSSES, ImplicitRegressor

__all__ = ["ImplicitRegressor", "LOSSES", "INFERENCE"]
