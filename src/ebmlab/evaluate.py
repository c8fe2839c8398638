r"""Evaluating a trained energy: the mean test log-likelihood with its standard error."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_generator, check_tensor
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.gibbs import Gibbs
from ebmlab.partition import Estimate

__all__ = ["log_likelihood"]


def log_likelihood(
    energy: Energy,
    data: Tensor,
    *,
    estimator: Any = "ais",
    domain: Box | None = None,
    beta: float = 1.0,
    batch_size: int = 65536,
    generator: torch.Generator | None = None,
) -> Estimate:
    r"""Estimate the mean log-likelihood of ``data`` under :math:`p = e^{-\beta F} / Z`.

    .. math::
        \overline{\log p} = -\beta\,\overline{F(y)} - \log Z_\beta,

    with :math:`\log Z_\beta` from ``estimator`` over ``domain`` (``"ais"``: annealed
    importance sampling, ``"importance"``: importance sampling, ``"grid"``: quadrature, exact
    up to the grid's error and only in ≤ 2-D in practice; or an ``eb.partition`` estimator
    object). The standard error combines the sampling error of the mean over the data
    (:math:`\beta\,\mathrm{sd}(F)/\sqrt N`) and the estimator's own (0 for a grid):
    :math:`\sqrt{\beta^2 s_F^2/N + \mathrm{se}(\log Z)^2}`. The negative of the value is the
    test NLL in nats; subtract it from the data entropy to compare models.

    Args:
        energy: an unconditional :class:`ebmlab.Energy`.
        data: test points ``(N, *y_shape)``.
        estimator: ``"ais"``, ``"importance"``, ``"grid"`` or an ``eb.partition`` estimator.
        domain: the :class:`ebmlab.Box` the density lives on; by default the data's bounding
            box widened by half its extent on each side.
        beta: inverse temperature.
        batch_size: rows per energy evaluation over the data.
        generator: random source of a Monte Carlo estimator.

    Returns:
        An :class:`ebmlab.Estimate` with ``value`` (the mean log-likelihood, nats) and
        ``stderr``; ``ess`` is the estimator's.

    Raises:
        TypeError: ``energy`` is not an ``ebmlab.Energy`` or ``data`` not a tensor.
        ValueError: empty data, non-finite energies on the data, or bad ``beta``.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(1))  # N(0, 1)
        >>> y = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
        >>> est = eb.evaluate.log_likelihood(q, y, estimator="grid",
        ...                                  domain=eb.Box([-8.0], [8.0]))
        >>> abs(est.value.item() - (-0.5 * math.log(2 * math.pi) - 0.5)) < 3 * est.stderr.item()
        True
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    data = check_tensor(data, "data")
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one point; got an empty batch")
    beta = check_beta(beta)
    generator = check_generator(generator)
    if domain is None:
        flat = data.detach().reshape(data.shape[0], -1)
        low, high = flat.amin(0), flat.amax(0)
        pad = 0.5 * (high - low) + 1e-3
        domain = Box((low - pad).reshape(data.shape[1:]), (high + pad).reshape(data.shape[1:]))
    with torch.no_grad():
        f = torch.cat([energy(chunk) for chunk in data.split(batch_size)]).double()
    if not bool(torch.isfinite(f).all()):
        raise ValueError("the energy is not finite on some data points; no likelihood")
    log_z = Gibbs(energy, beta=beta, domain=domain, estimator=estimator).log_partition(
        generator=generator)
    n = f.shape[0]
    sd = float(f.std(unbiased=True)) if n > 1 else 0.0
    value = -beta * f.mean() - log_z.value.double()
    se = math.sqrt((beta * sd) ** 2 / n + float(log_z.stderr) ** 2)
    dtype = log_z.value.dtype
    return Estimate(value.to(dtype), torch.tensor(se, dtype=dtype), log_z.ess)
