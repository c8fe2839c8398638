"""The second-order check: no descent direction from a reported minimum (Lanczos on H·v)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["lowest_curvature", "descent_check"]

# grad_fn(points (P, D), rows (P,)) -> (energy (P,), grad (P, D)); project(points) -> points
GradFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _free(y: Tensor, g: Tensor, project: Callable[[Tensor], Tensor], h: Tensor) -> Tensor:
    """(P, D) mask of the coordinates not held by an active bound of the domain."""
    at_high = project(y + h) < y + 0.5 * h
    at_low = project(y - h) > y - 0.5 * h
    return ~((at_high & (g < 0)) | (at_low & (g > 0)))


def lowest_curvature(
    grad_fn: GradFn,
    y: Tensor,
    rows: Tensor,
    free: Tensor,
    *,
    iters: int = 12,
) -> tuple[Tensor, Tensor]:
    r"""Return the lowest Ritz value and its unit vector of the Hessian at each of P points.

    Lanczos with full reorthogonalisation on the free coordinates, ``iters`` steps (at most
    their number), with Hessian-vector products by central differences of the gradient,
    :math:`Hv \approx (\nabla F(y + hv) - \nabla F(y - hv)) / 2h`. The start vector comes from
    a fixed internal seed, so the check draws nothing from the caller's generator.

    Returns:
        ``(lam, u)``: (P,) and (P, D).
    """
    p, d = y.shape
    m = max(1, min(iters, d))
    gen = torch.Generator(device=y.device).manual_seed(0)
    v = torch.randn(p, d, generator=gen, dtype=y.dtype, device=y.device) * free
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(y.dtype).tiny)
    h = (torch.finfo(y.dtype).eps ** 0.5 * (1 + y.norm(dim=-1))).unsqueeze(-1)
    basis = [v]
    alphas, betas = [], []
    v_prev, beta = torch.zeros_like(v), torch.zeros(p, dtype=y.dtype, device=y.device)
    for j in range(m):
        _, gp = grad_fn(y + h * v, rows)
        _, gm = grad_fn(y - h * v, rows)
        w = (gp - gm) / (2 * h) * free
        w = w - beta.unsqueeze(-1) * v_prev
        a = (w * v).sum(-1)
        w = w - a.unsqueeze(-1) * v
        big = torch.stack(basis, 1)  # (P, j+1, D)
        w = w - torch.einsum("pjd,pj->pd", big, torch.einsum("pjd,pd->pj", big, w))
        alphas.append(a)
        if j == m - 1:
            break
        beta = w.norm(dim=-1)
        ok = beta > 1e-8 * a.abs().clamp_min(1e-30)
        v_prev, v = v, torch.where(ok.unsqueeze(-1), w / beta.clamp_min(1e-30).unsqueeze(-1), 0.0)
        beta = torch.where(ok, beta, torch.zeros_like(beta))
        betas.append(beta)
        basis.append(v)
    k = len(alphas)
    t = torch.diag_embed(torch.stack(alphas, 1))
    if k > 1:
        off = torch.diag_embed(torch.stack(betas[: k - 1], 1), offset=1)
        t = t + off + off.transpose(1, 2)
    # Rows whose Krylov space closed early have zero rows/columns: push them up, out of the way.
    alive = torch.stack([torch.ones_like(alphas[0], dtype=torch.bool)] + [
        b > 0 for b in betas[: k - 1]], 1).cumprod(1).bool()
    big_value = t.abs().amax((1, 2)).clamp_min(1.0) * 10
    t = t + torch.diag_embed(torch.where(alive, 0.0, big_value.unsqueeze(-1)))
    lam, vecs = torch.linalg.eigh(t)
    u = torch.einsum("pjd,pj->pd", torch.stack(basis[:k], 1), vecs[:, :, 0])
    return lam[:, 0], u / u.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(y.dtype).tiny)


def descent_check(
    grad_fn: GradFn,
    project: Callable[[Tensor], Tensor],
    y: Tensor,
    energy: Tensor,
    rows: Tensor,
    rho: Tensor,
    delta: Tensor,
    *,
    iters: int = 12,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Find the P candidates that are not minima, and a lower point next to each.

    A candidate y fails when one of :math:`\Pi(y \pm \rho u)`, with u the direction of
    lowest curvature (:func:`lowest_curvature`, on the coordinates not held by the domain),
    has an energy below :math:`F(y) - \delta`: a saddle or a maximum has such a direction
    (:math:`F(y \pm \rho u) \approx F(y) + \rho^2 \lambda_{min} / 2`), a minimum does not.

    Args:
        grad_fn: ``grad_fn(points, rows) -> (energy, grad)``, flattened points (P, D).
        project: the projection onto the domain (identity without one).
        y, energy, rows: (P, D) candidates, their energies and their inputs.
        rho, delta: (P,) perturbation length and energy tolerance.

    Returns:
        ``(is_not_minimum, lower_plus, lower_minus)``: (P,) flags and the two perturbed
        points (P, D) (a failing candidate has at least one of them lower).
    """
    _, g = grad_fn(y, rows)
    h = (1e-3 * rho).unsqueeze(-1)
    free = _free(y, g, project, h)
    lam, u = lowest_curvature(grad_fn, y, rows, free.to(y.dtype), iters=iters)
    step = rho.unsqueeze(-1) * u
    plus, minus = project(y + step), project(y - step)
    e_plus, _ = grad_fn(plus, rows)
    e_minus, _ = grad_fn(minus, rows)
    bound = energy - delta
    is_plus, is_minus = e_plus < bound, e_minus < bound
    del lam
    return is_plus | is_minus, torch.where(is_plus.unsqueeze(-1), plus, minus), torch.where(
        is_minus.unsqueeze(-1), minus, plus
    )
