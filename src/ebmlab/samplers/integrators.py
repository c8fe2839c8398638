"""The integrators: leapfrog (velocity Verlet) with reflecting walls, and the Langevin step."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab.energy import Energy

__all__ = ["leapfrog", "leapfrog_step", "langevin_step", "reflect", "axpy"]

Scalar = float | Tensor


def axpy(y: Tensor, a: Scalar, v: Tensor) -> Tensor:
    """Return ``y + a * v`` in one fused op; ``a`` is a number or a broadcastable tensor."""
    if isinstance(a, Tensor):
        return torch.addcmul(y, a, v)
    return torch.add(y, v, alpha=a)


def reflect(
    y: Tensor, p: Tensor | None, low: Tensor, high: Tensor
) -> tuple[Tensor, Tensor | None]:
    r"""Fold ``y`` back into ``[low, high]`` by mirror reflection; flip ``p`` on odd bounces.

    Reflection with a momentum flip is volume preserving and reversible, so HMC and NUTS with
    reflecting walls keep the target restricted to the box exactly (Neal 2011, sec. 5.5.1).

    Args:
        y: positions ``(chains, *shape)``. p: momenta shaped like ``y`` or ``None``.
        low, high: the box corners, broadcastable to ``y``.

    Returns:
        ``(y, p)`` folded into the box.

    References:
        Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011, arXiv:1206.1901.

    Example:
        >>> import torch
        >>> y, p = reflect(torch.tensor([[1.5, -0.25]]), torch.ones(1, 2), torch.zeros(2),
        ...                torch.ones(2))
        >>> y.tolist(), p.tolist()
        ([[0.5, 0.25]], [[-1.0, -1.0]])
    """
    width = high - low
    scaled = (y - low) / width
    bounces = torch.floor(scaled)
    frac = scaled - bounces
    is_odd = torch.remainder(bounces, 2.0) == 1.0
    y = low + width * torch.where(is_odd, 1.0 - frac, frac)
    if p is not None:
        p = torch.where(is_odd, -p, p)
    return y, p


def leapfrog(
    y: Tensor,
    p: Tensor,
    grad: Tensor,
    energy: Energy,
    x: Tensor | None,
    step_size: Scalar,
    num_steps: int = 1,
    inv_mass: Scalar = 1.0,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Integrate Hamilton's equations for :math:`H = F(y) + \tfrac12 p^\top M^{-1} p`.

    One gradient per step: the gradient at the end of a step is reused for the first half
    kick of the next, and the gradient at the start comes in as ``grad``.

    Args:
        y, p, grad: position, momentum and :math:`\nabla F(y)`, shape ``(chains, *y_shape)``.
        energy: the energy; called through ``energy_and_grad`` (no graph, no validation).
        x: conditioning input or ``None``.
        step_size: a number or a tensor broadcastable to ``y`` (e.g. signed per chain).
        num_steps: number of leapfrog steps L.
        inv_mass: :math:`M^{-1}`, a number or a diagonal broadcastable to ``y``.
        bounds: optional ``(low, high)`` reflecting walls.

    Returns:
        ``(y, p, energy, grad)`` at the end of the trajectory.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(1))
        >>> y, p, e, g = leapfrog(torch.ones(1, 1), torch.zeros(1, 1), torch.ones(1, 1), q,
        ...                       None, 0.1, 10)
        >>> round(float(e + 0.5 * p.square().sum()), 2)  # H is conserved to O(h^2)
        0.5
    """
    neg_half = -0.5 * step_size
    neg_full = -step_size
    drift = step_size * inv_mass
    p = axpy(p, neg_half, grad)
    e = grad  # replaced on the first step (num_steps >= 1)
    last = num_steps - 1
    for i in range(num_steps):
        y = axpy(y, drift, p)
        if bounds is not None:
            y, p = reflect(y, p, bounds[0], bounds[1])
        e, grad = energy.energy_and_grad(y, x)
        p = axpy(p, neg_half if i == last else neg_full, grad)
    return y, p, e, grad


def leapfrog_step(
    y: Tensor,
    p: Tensor,
    grad: Tensor,
    energy: Energy,
    x: Tensor | None,
    neg_half: Scalar,
    drift: Scalar,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""One kick-drift-kick leapfrog step with precomputed coefficients.

    :math:`p \leftarrow p - \tfrac{\epsilon}{2}\nabla F`, :math:`y \leftarrow y + \epsilon
    M^{-1} p` (reflected at ``bounds``), a new gradient, and the second half kick. NUTS calls it
    with ``neg_half = -ε/2`` and ``drift = ε M⁻¹`` computed once per doubling (ε signed per
    chain). :func:`leapfrog` makes the same moves but fuses the half kicks between steps.

    Args:
        y, p, grad: position, momentum and :math:`\nabla F(y)`, shape ``(chains, *y_shape)``.
        energy: the energy; called through ``energy_and_grad``.
        x: conditioning input or ``None``.
        neg_half: :math:`-\epsilon/2`, a number or a tensor broadcastable to ``y``.
        drift: :math:`\epsilon M^{-1}`, a number or a tensor broadcastable to ``y``.
        bounds: optional ``(low, high)`` reflecting walls.

    Returns:
        ``(y, p, energy, grad)`` after the step.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(1))
        >>> y0, p0, g0 = torch.ones(1, 1), torch.zeros(1, 1), torch.ones(1, 1)
        >>> a = leapfrog_step(y0, p0, g0, q, None, -0.05, 0.1)
        >>> b = leapfrog(y0, p0, g0, q, None, 0.1, 1)
        >>> all(torch.equal(u, v) for u, v in zip(a, b))
        True
    """
    p = axpy(p, neg_half, grad)
    y = axpy(y, drift, p)
    if bounds is not None:
        y, p = reflect(y, p, bounds[0], bounds[1])
    e, grad = energy.energy_and_grad(y, x)
    p = axpy(p, neg_half, grad)
    return y, p, e, grad


def langevin_step(
    y: Tensor,
    grad: Tensor,
    neg_step: Scalar,
    noise_scale: Scalar,
    generator: torch.Generator | None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The Euler-Maruyama Langevin move :math:`y' = y - h\nabla F(y) + \sqrt{2h/\beta}\,\xi`.

    One standard normal draw :math:`\xi` shaped like ``y``; the move is made in two fused ops.
    It is the step of :class:`~ebmlab.samplers.Langevin` and the proposal of
    :class:`~ebmlab.samplers.MALA` (walls, if any, are the caller's business).

    Args:
        y, grad: the positions and :math:`\nabla F(y)`, shape ``(chains, *y_shape)``.
        neg_step: :math:`-h`, a number or a broadcastable tensor.
        noise_scale: :math:`\sqrt{2h/\beta}`, a number or a broadcastable tensor.
        generator: the random source of :math:`\xi`.
        noise: :math:`\xi` drawn beforehand (then ``generator`` is not used), e.g. by a
            compiled step whose random numbers are drawn outside the compiled region.

    Returns:
        ``(y', xi)``: the moved positions and the noise drawn.

    Example:
        >>> import torch
        >>> y, xi = langevin_step(torch.zeros(2, 3), torch.ones(2, 3), -0.5, 0.0, None)
        >>> y[0].tolist(), xi.shape
        ([-0.5, -0.5, -0.5], torch.Size([2, 3]))
    """
    if noise is None:
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    y_new = axpy(y, neg_step, grad)  # a fresh tensor: the noise is added in place
    if isinstance(noise_scale, Tensor):
        y_new = y_new.addcmul_(noise, noise_scale)
    else:
        y_new = y_new.add_(noise, alpha=noise_scale)
    return y_new, noise
