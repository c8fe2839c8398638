"""Sample-quality discrepancies that need no log Z: the kernel Stein discrepancy and MMD.

Re-exported by :mod:`ebmlab.samplers.diagnostics` (``eb.diagnostics.ksd``, ``eb.diagnostics.mmd``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["ksd", "mmd"]


def _stein_inputs(samples: Tensor, energy: Any, beta: float) -> tuple[Tensor, Tensor]:
    from ebmlab.energy import Energy

    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an eb.Energy; got {type(energy).__name__}")
    if not isinstance(samples, Tensor) or not samples.is_floating_point():
        raise TypeError(f"samples must be a floating tensor; got {type(samples).__name__}")
    event = tuple(energy.y_shape) if energy.y_shape is not None else tuple(samples.shape[1:])
    lead = samples.ndim - len(event)
    if lead < 1 or tuple(samples.shape[lead:]) != event:
        raise ValueError(
            f"samples has shape {tuple(samples.shape)}; expected (..., *y_shape) with y_shape "
            f"{event}"
        )
    y = samples.reshape(-1, *event)
    if y.shape[0] < 2:
        raise ValueError(f"samples must hold at least 2 points; got {y.shape[0]}")
    _, grad = energy.energy_and_grad(y.detach())
    score = (-beta * grad).reshape(y.shape[0], -1).double()
    return y.reshape(y.shape[0], -1).double(), score


def ksd(
    samples: Tensor, energy: Any, *, beta: float = 1.0, c: float = 1.0, exponent: float = -0.5
) -> Tensor:
    r"""Return the kernel Stein discrepancy :math:`\mathrm{KSD}^2` of samples against
    :math:`p \propto e^{-\beta F}`, with the inverse multiquadric kernel.

    Needs only the score :math:`s = -\beta\nabla F` (no :math:`\log Z`). With
    :math:`k(x, y) = (c^2 + \|x - y\|^2)^{b}` (b = ``exponent`` in (-1, 0), Gorham and Mackey's
    choice b = -1/2, c = 1) the Stein kernel is

    .. math:: u(x, y) = s(x)^\top s(y) k + s(x)^\top\nabla_y k + s(y)^\top \nabla_x k +
              \mathrm{tr}\,\nabla_x\nabla_y k,

    and the returned value is the U-statistic :math:`\frac{1}{N(N-1)}\sum_{i\ne j}
    u(y_i, y_j)`: an unbiased estimate of :math:`\mathrm{KSD}^2`, zero in expectation for
    exact samples (so it may be slightly negative), positive and growing as the samples
    move away from p. IMQ KSD detects non-convergence (Gorham and Mackey 2017, thm. 8).
    Memory and time are :math:`O(N^2)`.

    Args:
        samples: ``(..., *y_shape)`` points (e.g. ``chain.samples``, all leading axes pooled).
        energy: the energy F.
        beta: the inverse temperature of the target.
        c, exponent: the IMQ kernel's constants.

    Returns:
        A 0-dim float64 tensor.

    References:
        Gorham and Mackey, "Measuring sample quality with kernels", ICML 2017,
        arXiv:1703.01717; Liu, Lee and Jordan, "A kernelized Stein discrepancy for
        goodness-of-fit tests", ICML 2016.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> g = torch.Generator().manual_seed(0)
        >>> exact, shifted = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g) + 1
        >>> abs(ksd(exact, q).item()) < 0.02, ksd(shifted, q).item() > 0.3
        (True, True)
    """
    if not -1.0 < exponent < 0.0:
        raise ValueError(f"exponent must lie in (-1, 0); got {exponent}")
    if not c > 0:
        raise ValueError(f"c must be > 0; got {c}")
    y, s = _stein_inputs(samples, energy, beta)
    n, d = y.shape
    b = exponent
    sq = (y * y).sum(1)
    r2 = (sq[:, None] + sq[None, :] - 2.0 * y @ y.T).clamp(min=0.0)
    base = c * c + r2
    k = base.pow(b)
    dk = 2.0 * b * base.pow(b - 1.0)  # d k / d r^2 times 2
    ys = y @ s.T  # (i, j) = y_i . s_j
    sy = (s * y).sum(1)
    # s(x_i) . grad_y k(x_i, y_j) = -dk (s_i . (y_i - y_j)) = -dk (sy_i - ys_ji)
    term_x = -dk * (sy[:, None] - ys.T)
    # s(y_j) . grad_x k(x_i, y_j) = dk (s_j . (y_i - y_j)) = dk (ys_ij - sy_j)
    term_y = dk * (ys - sy[None, :])
    trace = -2.0 * b * d * base.pow(b - 1.0) - 4.0 * b * (b - 1.0) * base.pow(b - 2.0) * r2
    u = (s @ s.T) * k + term_x + term_y + trace
    return (u.sum() - u.diagonal().sum()) / (n * (n - 1))


def mmd(samples: Tensor, reference: Tensor, *, bandwidth: float | None = None) -> Tensor:
    r"""Return the unbiased squared maximum mean discrepancy between two sample sets.

    With the Gaussian kernel :math:`k(x, y) = e^{-\|x - y\|^2 / (2\ell^2)}`,
    :math:`\mathrm{MMD}^2_u = \overline{k(X, X')} + \overline{k(Y, Y')} - 2\,\overline{k(X,
    Y)}` (the within-set means exclude the diagonal): zero in expectation when both sets
    come from the same law. :math:`\ell` defaults to the median pairwise distance of the
    pooled points (the median heuristic).

    Args:
        samples: ``(N, *shape)`` points (leading axes beyond the first are not pooled:
            flatten a chain's ``(T, chains, ...)`` samples first).
        reference: ``(M, *shape)`` points, e.g. exact draws.
        bandwidth: :math:`\ell > 0`, or ``None`` for the median heuristic.

    Returns:
        A 0-dim float64 tensor.

    References:
        Gretton, Borgwardt, Rasch, Schölkopf and Smola, "A kernel two-sample test", JMLR,
        2012.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
        >>> abs(mmd(a, b).item()) < 0.01, mmd(a, b + 1).item() > 0.1
        (True, True)
    """
    for name, value in (("samples", samples), ("reference", reference)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor; got {type(value).__name__}")
        if value.ndim < 1 or value.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 points; got {tuple(value.shape)}")
    if tuple(samples.shape[1:]) != tuple(reference.shape[1:]):
        raise ValueError(
            f"samples and reference must have the same point shape; got "
            f"{tuple(samples.shape[1:])} and {tuple(reference.shape[1:])}"
        )
    x = samples.reshape(samples.shape[0], -1).double()
    y = reference.reshape(reference.shape[0], -1).double().to(x.device)
    if bandwidth is None:
        pooled = torch.cat([x, y])
        dist = torch.cdist(pooled, pooled)
        off = dist[~torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)]
        bandwidth = float(off.median()) or 1.0
    elif not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a number > 0 or None; got {bandwidth!r}")
    scale = -0.5 / bandwidth**2

    def mean_k(a: Tensor, b: Tensor, same: bool) -> Tensor:
        k = (torch.cdist(a, b).square() * scale).exp()
        if same:
            n = a.shape[0]
            return (k.sum() - k.diagonal().sum()) / (n * (n - 1))
        return k.mean()

    return mean_k(x, x, True) + mean_k(y, y, True) - 2.0 * mean_k(x, y, False)
