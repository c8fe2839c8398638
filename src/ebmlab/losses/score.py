r"""Score matching: exact (Hessian trace), sliced and denoising.

The model density is :math:`p(y) \propto e^{-F(x, y)}`, whose score is
:math:`\nabla_y \log p = -\nabla_y F`; score matching fits it without the partition function.
These losses need derivatives of the energy in ``y``, so they take the energy itself:
``loss(energy, y, x=None, ...)``. They keep the autograd graph (``create_graph=True``) so
that their value can be back-propagated to the energy's parameters (and to ``x``); ``y`` is
differentiated at, not trained, unless it already requires grad.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.energy import check_energy_output
from ebmlab.losses._common import (
    check_energy_callable,
    check_generator_device,
    check_nonnegative,
    check_reduction,
    grad_y,
    prepare_y,
    reduce,
)

__all__ = ["exact_score_matching", "sliced_score_matching", "denoising_score_matching"]

EnergyFn = Callable[..., Tensor]

_PROJECTIONS = ("orthogonal", "rademacher", "gaussian")
_ESTIMATORS = ("ssm_vr", "ssm")


def _sum_event(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, *event) -> (B,)``."""
    return t.flatten(1).sum(-1)


def _orthogonal(
    num: int, batch: int, dim: int, generator: torch.Generator | None, like: Tensor
) -> Tensor:
    r"""``num`` projections per example, :math:`\sqrt D` times orthonormal, shape ``(num, B, D)``.

    Frames of :math:`\min(\text{num}, D)` columns from the QR of a standard Gaussian
    ``(B, D, k)`` draw, sign-corrected so that each column is uniform on the sphere (so
    :math:`\mathbb E[v v^\top] = I`); ``num > D`` takes further independent frames.
    """
    frames, left = [], num
    while left > 0:
        k = min(left, dim)
        z = torch.randn((batch, dim, k), generator=generator, dtype=like.dtype, device=like.device)
        q, r = torch.linalg.qr(z)  # reduced: q (B, D, k)
        sign = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(q.dtype)
        frames.append((q * sign.unsqueeze(-2)).permute(2, 0, 1))  # (k, B, D)
        left -= k
    return torch.cat(frames) * math.sqrt(dim)


def exact_score_matching(
    energy: EnergyFn, y: Tensor, x: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    r"""Compute Hyvärinen's score-matching loss with the exact Hessian trace.

    .. math::
        L(y) = \tfrac12 \lVert \nabla_y F(x, y) \rVert^2 - \operatorname{tr} \nabla_y^2 F(x, y),

    whose expectation over the data equals :math:`\tfrac12 \mathbb E \lVert \nabla \log p -
    \nabla \log p_{data} \rVert^2` up to a constant. The trace costs one extra backward pass
    per dimension of ``y`` (D passes): exact and cheap for small D; use
    :func:`sliced_score_matching` or :func:`denoising_score_matching` in high dimension.
    Margin: none.

    Args:
        energy: an :class:`ebmlab.Energy` or any callable ``energy(y, x) -> (B,)``, twice
            differentiable in ``y``.
        y: data, shape ``(B, *y_shape)``.
        x: conditioning input ``(B, *x_shape)`` or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``(B,)``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if ``energy`` is not callable or ``y``/``x`` are not floating tensors.
        ValueError: if the batch sizes differ, the energy's output is not ``(B,)`` or
            ``reduction`` is unknown.

    References:
        Hyvärinen, "Estimation of non-normalized statistical models by score matching", JMLR
        2005, Theorem 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2) * 2.0)
        >>> eb.losses.exact_score_matching(q, torch.tensor([[1.0, 0.0]])).item()  # 4/2 - 4
        -2.0
    """
    reduction = check_reduction(reduction)
    energy = check_energy_callable(energy)
    y = prepare_y(y, x)
    g = grad_y(check_energy_output(energy(y, x), y.shape[0], "energy"), y)
    g_flat = g.flatten(1)  # (B, D)
    trace = torch.zeros_like(g_flat[:, 0])
    for i in range(g_flat.shape[1]):
        trace = trace + grad_y(g_flat[:, i], y).flatten(1)[:, i]
    return reduce(0.5 * g_flat.square().sum(-1) - trace, reduction)


def sliced_score_matching(
    energy: EnergyFn,
    y: Tensor,
    x: Tensor | None = None,
    *,
    sigma: float = 0.1,
    num_projections: int | None = None,
    projection: str = "orthogonal",
    estimator: str = "ssm_vr",
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the sliced score-matching loss with random projections.

    For projections :math:`v` with :math:`\mathbb E[v v^\top] = I`, the trace of the Hessian
    is replaced by :math:`v^\top \nabla_y^2 F\, v`, one Hessian-vector product per projection:

    - ``estimator="ssm"``:
      :math:`L = \tfrac12 (v^\top \nabla_y F)^2 - v^\top \nabla_y^2 F\, v`;
    - ``estimator="ssm_vr"`` (variance reduced, default): the first term's expectation over
      :math:`v` in closed form, :math:`L = \tfrac12 \lVert \nabla_y F \rVert^2 -
      v^\top \nabla_y^2 F\, v`.

    Both are unbiased for :func:`exact_score_matching` at the points they are evaluated at,
    averaged over ``num_projections`` draws per example.

    **Noise.** With ``sigma`` > 0 (default 0.1, in the data's units) the loss is evaluated
    at :math:`\tilde y = y + \sigma\varepsilon`, so it fits the data blurred by σ, the
    target of :func:`denoising_score_matching` at the same σ, estimated with less variance
    (no :math:`\varepsilon/\sigma` target). Score matching on the clean data sees the
    score only where the data are, so it cannot weigh modes that the data do not connect
    (rings 1 apart of width 0.1: 0.7–1.1 nats above the entropy, 0.1 with σ = 0.1); the
    blur costs :math:`\tfrac12[\log(1 + r) - r/(1 + r)]` nats, :math:`r = \sigma^2/s^2`, per
    direction of a Gaussian mode of width s. ``sigma=0``: plain sliced score matching.

    **Projections.** ``projection="orthogonal"`` (default) draws each example's M
    projections as :math:`\sqrt D` times orthonormal directions (a uniformly random frame):
    unbiased like the others, with less variance, and with M = D the average of
    :math:`v^\top \nabla^2 F\, v` *is* the trace (the exact loss, in D + 1 passes instead of
    :func:`exact_score_matching`'s D + 1 on M·B rows). The default M = min(D, 2) is exact
    for D ≤ 2, where one Rademacher or Gaussian projection's variance (the off-diagonal
    :math:`2 v_1 v_2 \partial_{12} F` term) wrecks the fit of curved, thin densities such as
    rings. Draws, from ``generator``: ε (``randn`` of ``y``'s shape, if σ > 0), then
    ``"orthogonal"``: a ``randn`` of shape ``(B, D, k)``
    per frame of k = min(M left, D) directions; ``"rademacher"``/``"gaussian"``: one tensor
    of shape ``(M, B, *y_shape)``. Margin: none.

    Args:
        energy: an :class:`ebmlab.Energy` or any callable ``energy(y, x) -> (B,)``.
        y: data, shape ``(B, *y_shape)``.
        x: conditioning input ``(B, *x_shape)`` or ``None``.
        sigma: the noise standard deviation σ >= 0 (0: the clean data).
        num_projections: projections per example, M >= 1 (the energy is evaluated on M * B
            rows); ``None``: min(D, 2), D the number of entries of ``y_shape``.
        projection: ``"orthogonal"`` (default), ``"rademacher"`` (entries ±1) or
            ``"gaussian"``.
        estimator: ``"ssm_vr"`` or ``"ssm"``.
        generator: random generator for the projections.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``(B,)``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: on inputs of the wrong type.
        ValueError: on unknown ``projection``/``estimator``/``reduction``, a bad
            ``sigma`` or ``num_projections`` or mismatched batch sizes.

    References:
        Song, Garg, Shi, Ermon, "Sliced score matching: A scalable approach to density and
        score estimation", UAI 2019, arXiv:1905.07088 (SSM and SSM-VR; on noisy data as in
        Song & Ermon, "Generative Modeling by Estimating Gradients of the Data
        Distribution", NeurIPS 2019); orthogonal
        projections as in Yu et al., "Orthogonal Random Features", NeurIPS 2016.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.tensor([[2.0, 1.0], [1.0, 3.0]]))
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.tensor([[1.0, 0.0]])
        >>> exact = eb.losses.exact_score_matching(q, y)  # |(2, 1)|^2 / 2 - tr A = -2.5
        >>> sliced = eb.losses.sliced_score_matching(q, y, sigma=0.0, generator=g)
        >>> bool(torch.isclose(sliced, exact))  # exact in 2-D at the clean point
        True
    """
    reduction = check_reduction(reduction)
    energy = check_energy_callable(energy)
    sigma = check_nonnegative(sigma, "sigma")
    if num_projections is not None:
        num_projections = check_positive_int(num_projections, "num_projections")
    if projection not in _PROJECTIONS:
        raise ValueError(f"projection must be one of {_PROJECTIONS}; got {projection!r}")
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}; got {estimator!r}")
    generator = check_generator(generator)
    y = prepare_y(y, x)
    check_generator_device(generator, y)
    batch, dim = y.shape[0], math.prod(y.shape[1:])
    if sigma > 0:
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        y = y + sigma * noise
    if num_projections is None:
        num_projections = min(dim, 2)
    shape = (num_projections, *y.shape)
    if projection == "orthogonal":
        v = _orthogonal(num_projections, batch, dim, generator, y)
    elif projection == "gaussian":
        v = torch.randn(shape, generator=generator, dtype=y.dtype, device=y.device)
    else:
        v = torch.randint(0, 2, shape, generator=generator, device=y.device).to(y.dtype)
        v = 2 * v - 1
    # (M, B, *y_shape) -> (M*B, *y_shape): every projection sees its own copy of the batch.
    y_rep = y.expand(shape).reshape(-1, *y.shape[1:])
    x_rep = None if x is None else x.expand(num_projections, *x.shape).reshape(-1, *x.shape[1:])
    v = v.reshape(y_rep.shape)
    g = grad_y(check_energy_output(energy(y_rep, x_rep), y_rep.shape[0], "energy"), y_rep)
    gv = _sum_event(g * v)
    vhv = _sum_event(grad_y(gv, y_rep) * v)
    first = 0.5 * (gv.square() if estimator == "ssm" else _sum_event(g.square()))
    loss = (first - vhv).reshape(num_projections, batch).mean(0)
    return reduce(loss, reduction)


def denoising_score_matching(
    energy: EnergyFn,
    y: Tensor,
    x: Tensor | None = None,
    *,
    sigma: float,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute Vincent's denoising score-matching loss at noise scale :math:`\sigma`.

    With :math:`\tilde y = y + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`,

    .. math::
        L = \tfrac12 \lVert \nabla_y F(x, \tilde y) - \varepsilon / \sigma \rVert^2,

    the squared error between the model score and the score of the noise kernel,
    :math:`\nabla_{\tilde y} \log q_\sigma(\tilde y \mid y) = -\varepsilon / \sigma`. Its
    expectation equals the exact score-matching loss against the *noisy* data density
    :math:`q_\sigma` plus a constant, so it fits a density blurred by :math:`\sigma`. No
    Hessian is needed. The noise is drawn as ``torch.randn(y.shape, generator=generator)``.
    Margin: none.

    Args:
        energy: an :class:`ebmlab.Energy` or any callable ``energy(y, x) -> (B,)``.
        y: data, shape ``(B, *y_shape)``.
        x: conditioning input ``(B, *x_shape)`` or ``None``.
        sigma: the noise standard deviation :math:`\sigma > 0`.
        generator: random generator for the noise.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``(B,)``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: on inputs of the wrong type.
        ValueError: if ``sigma`` is not a finite positive number, batch sizes differ or
            ``reduction`` is unknown.

    References:
        Vincent, "A connection between score matching and denoising autoencoders", Neural
        Computation 2011 (the denoising objective and its equivalence to score matching).

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> g = torch.Generator().manual_seed(0)
        >>> loss = eb.losses.denoising_score_matching(q, torch.zeros(4, 2), sigma=1.0, generator=g)
        >>> loss.item()  # A = I and sigma = 1: the model score cancels the noise score exactly
        0.0
    """
    reduction = check_reduction(reduction)
    energy = check_energy_callable(energy)
    sigma = check_positive(sigma, "sigma")
    generator = check_generator(generator)
    y = prepare_y(y, x)
    check_generator_device(generator, y)
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    y_noisy = y + sigma * noise
    g = grad_y(check_energy_output(energy(y_noisy, x), y_noisy.shape[0], "energy"), y_noisy)
    return reduce(0.5 * _sum_event((g - noise / sigma).square()), reduction)
