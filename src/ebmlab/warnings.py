"""Warnings of ebmlab: results that came back but may not mean what they seem to."""

from __future__ import annotations

__all__ = ["InferenceWarning", "SamplerWarning"]


class InferenceWarning(UserWarning):
    """``eb.infer`` reported minima that include unconverged end points.

    Raised (once per call) when some input's reported minima come from starts that hit
    ``max_steps`` before meeting the convergence test; a converged run is silent.

    Example:
        >>> import warnings, ebmlab as eb
        >>> issubclass(eb.InferenceWarning, UserWarning)
        True
    """


class SamplerWarning(UserWarning):
    """A sampler's chains diverged, or its diagnostics say the samples are not to be trusted.

    Example:
        >>> import ebmlab as eb
        >>> issubclass(eb.SamplerWarning, UserWarning)
        True
    """
