"""Analytic energies with closed-form gradients: Quadratic, GaussianMixture, DoubleWell, Banana."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ebmlab._checks import check_positive, check_positive_int
from ebmlab.energy import Energy

__all__ = ["Quadratic", "GaussianMixture", "DoubleWell", "Banana"]


def _unconditional(energy: Energy, x: Tensor | None) -> None:
    if x is not None:
        raise ValueError(f"{type(energy).__name__} is unconditional; got x, expected x=None")


def _as_param(
    value: Sequence[float] | Tensor, name: str, ndim: int, like: Tensor | None = None
) -> Tensor:
    """A parameter tensor: a floating tensor keeps its dtype and device (nothing is cast);
    numbers take ``like``'s dtype and device, or the default dtype."""
    if isinstance(value, Tensor) and (value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be real numbers; got a tensor of dtype {value.dtype}")
    if isinstance(value, Tensor) and value.is_floating_point():
        if like is not None and (value.dtype != like.dtype or value.device != like.device):
            raise TypeError(
                f"{name} has dtype {value.dtype} on {value.device} but the other parameters "
                f"have {like.dtype} on {like.device}; pass them alike (nothing is cast)"
            )
        t = value.detach().clone()
    elif like is not None:
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach().clone()
    else:
        t = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite; got {t}")
    return t


class Quadratic(Energy):
    r"""The quadratic :math:`F(y) = \tfrac12 (y-\mu)^\top A (y-\mu)`, minimum at :math:`\mu`.

    Args:
        precision: the matrix :math:`A` (d, d); symmetrised. Positive definite for a minimum.
        mean: :math:`\mu` (d,); zeros by default.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2) * 2.0, mean=[1.0, 0.0])
        >>> q(torch.tensor([[0.0, 0.0]])).tolist()
        [1.0]
    """

    def __init__(
        self,
        precision: Sequence[Sequence[float]] | Tensor,
        mean: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        a = _as_param(precision, "precision", 2)
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"precision must be square; got shape {tuple(a.shape)}")
        d = a.shape[0]
        mu = (torch.zeros(d, dtype=a.dtype, device=a.device) if mean is None
              else _as_param(mean, "mean", 1, like=a))
        if mu.shape != (d,):
            raise ValueError(f"mean must have shape ({d},); got {tuple(mu.shape)}")
        self.precision = nn.Parameter(0.5 * (a + a.T))
        self.mean = nn.Parameter(mu)
        self.y_shape = (d,)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        _unconditional(self, x)
        r = y - self.mean
        return 0.5 * ((r @ self.precision) * r).sum(-1)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _unconditional(self, x)
        with torch.no_grad():
            r = y - self.mean
            g = r @ self.precision
            return 0.5 * (g * r).sum(-1), g

    def log_partition(self, beta: float = 1.0) -> float:
        r""":math:`\log \int e^{-\beta F} = \tfrac d2 \log(2\pi/\beta) - \tfrac12 \log\det A`."""
        d = self.mean.numel()
        return 0.5 * d * math.log(2 * math.pi / beta) - 0.5 * float(
            torch.linalg.slogdet(self.precision.detach())[1]
        )


class GaussianMixture(Energy):
    r"""The exact negative log density of a diagonal Gaussian mixture (so :math:`\log Z = 0`).

    :math:`F(y) = -\log \sum_k w_k \mathcal N(y; \mu_k, \mathrm{diag}(\sigma_k^2))`, computed
    with log-sum-exp; the gradient :math:`\sum_k r_k(y)(y-\mu_k)/\sigma_k^2` is in closed form.

    Args:
        means: component means (K, d).
        scales: standard deviations, a number, (K,) or (K, d).
        weights: mixture weights (K,), normalised; uniform by default.

    Example:
        >>> import torch, ebmlab as eb
        >>> gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.2)
        >>> gm(torch.zeros(1, 2)).shape
        torch.Size([1])
    """

    def __init__(
        self,
        means: Sequence[Sequence[float]] | Tensor,
        scales: float | Sequence[float] | Tensor = 1.0,
        weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        mu = _as_param(means, "means", 2)
        k, d = mu.shape
        s = torch.as_tensor(scales, dtype=mu.dtype)
        try:
            s = torch.broadcast_to(s.reshape(-1, 1) if s.ndim == 1 else s, (k, d)).clone()
        except RuntimeError as err:
            raise ValueError(
                f"scales must be a number, ({k},) or ({k}, {d}); got {tuple(s.shape)}"
            ) from err
        if not (s > 0).all():
            raise ValueError("scales must be > 0")
        w = (
            torch.full((k,), 1.0 / k, dtype=mu.dtype)
            if weights is None
            else _as_param(weights, "weights", 1, like=mu)
        )
        if w.shape != (k,) or not (w > 0).all():
            raise ValueError(f"weights must be ({k},) and > 0; got {w}")
        self.means = nn.Parameter(mu)
        self.log_scales = nn.Parameter(s.log())
        self.logits = nn.Parameter((w / w.sum()).log())
        self.y_shape = (d,)

    @classmethod
    def ring(cls, num: int = 8, radius: float = 2.0, scale: float = 0.2) -> GaussianMixture:
        """Equal-weight isotropic components evenly spaced on a circle (the '8 Gaussians')."""
        check_positive_int(num, "num")
        check_positive(radius, "radius")
        angles = torch.arange(num, dtype=torch.get_default_dtype()) * (2 * math.pi / num)
        return cls(radius * torch.stack([angles.cos(), angles.sin()], -1), scale)

    def _log_components(self, y: Tensor) -> Tensor:
        """log w_k N(y; mu_k, sigma_k^2) per row and component, (B, K), in autograd."""
        inv_var = torch.exp(-2 * self.log_scales)  # (K, d)
        diff = y.unsqueeze(-2) - self.means  # (B, K, d)
        d = self.means.shape[1]
        log_w = torch.log_softmax(self.logits, 0)
        return (
            log_w
            - 0.5 * (diff * diff * inv_var).sum(-1)
            - self.log_scales.sum(-1)
            - 0.5 * d * math.log(2 * math.pi)
        )  # (B, K)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        _unconditional(self, x)
        return -torch.logsumexp(self._log_components(y), -1)

    def _constants(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Parameter-derived constants of the closed-form gradient, cached until a change.

        Returns ``(iv, iv_t, mu_iv_t, mu_iv, const, shared)``: the inverse variances (K, d)
        and their transpose (a view), ``(means * iv).T`` (d, K, contiguous) and its
        transpose (a view), the per-component constant (K,), and ``shared`` — the common
        inverse variance as a 0-dim tensor when every component is isotropic with the same
        scale (the |y|² term is then one scalar per row instead of a matmul), else ``None``.
        The cache key holds each parameter's version counter, so an optimiser step (in
        place) or a reassignment invalidates it.
        """
        if torch.compiler.is_compiling():
            # Inside torch.compile: computed in the graph (a handful of (K, d) ops that the
            # compiler fuses), since a cache keyed on data pointers would break the graph;
            # ``shared`` is None because whether it applies depends on the values.
            return self._compute_constants(with_shared=False)
        params = (self.means, self.log_scales, self.logits)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        constants = self._compute_constants(with_shared=True)
        self._cache = (key, constants)
        return constants

    def _compute_constants(
        self, with_shared: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        with torch.no_grad():
            iv = torch.exp(-2 * self.log_scales)  # (K, d)
            mu_iv = self.means * iv
            d = self.means.shape[1]
            const = (
                torch.log_softmax(self.logits, 0)
                - 0.5 * (self.means * mu_iv).sum(-1)
                - self.log_scales.sum(-1)
                - 0.5 * d * math.log(2 * math.pi)
            )  # (K,)
            shared = None
            if with_shared:
                first = self.log_scales.reshape(-1)[0]
                if bool((self.log_scales == first).all()):
                    shared = iv.reshape(-1)[0].clone()
        mu_iv_t = mu_iv.T.contiguous()
        return iv, iv.T, mu_iv_t, mu_iv_t.T, const, shared

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _unconditional(self, x)
        with torch.no_grad():
            return _mixture_energy_and_grad(y, *self._constants())

    def frozen_energy_and_grad(self) -> Callable[..., tuple[Tensor, Tensor]]:
        """Return :meth:`energy_and_grad` with the parameter-derived constants fixed now.

        The returned ``f(y, x=None)`` gives the same numbers as :meth:`energy_and_grad` for
        as long as the parameters do not change, without its per-call work (the cache check,
        the ``x`` check, entering ``no_grad``): the sampling loop of :func:`ebmlab.sample`
        takes it once per run. Call it without autograd (under ``torch.no_grad()`` or with
        a ``y`` that does not require grad); ``x`` must be ``None`` (it is not checked).

        Example:
            >>> import torch, ebmlab as eb
            >>> gm = eb.energies.GaussianMixture.ring(4)
            >>> y = torch.randn(3, 2)
            >>> f = gm.frozen_energy_and_grad()
            >>> all(torch.equal(a, b) for a, b in zip(f(y), gm.energy_and_grad(y)))
            True
        """
        constants = self._constants()

        def frozen(y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return _mixture_energy_and_grad(y, *constants)

        return frozen


def _mixture_energy_and_grad(
    y: Tensor,
    iv: Tensor,
    iv_t: Tensor,
    mu_iv_t: Tensor,
    mu_iv: Tensor,
    const: Tensor,
    shared: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """The mixture's energy and gradient from its constants (see ``GaussianMixture._constants``).

    Expanded quadratic form: only (B, d) x (d, K) products, no (B, K, d) tensor;
    ||y - mu_k||^2_k = y^2 . iv_k - 2 y . (mu_k iv_k) + mu_k^2 . iv_k.
    """
    if shared is not None:
        # One inverse variance c for all: F = c|y|²/2 - logsumexp(const + y.mu_iv),
        # grad = c y - resp @ mu_iv (one matmul each way).
        log_comp = torch.addmm(const, y, mu_iv_t)
        log_norm = torch.logsumexp(log_comp, -1, keepdim=True)
        resp = torch.exp(log_comp - log_norm)  # (B, K)
        sq = (y * y).sum(-1)
        energy = torch.addcmul(-log_norm.squeeze(-1), sq, shared, value=0.5)
        grad = torch.addmm(y * shared, resp, mu_iv, alpha=-1.0)
        return energy, grad
    log_comp = torch.addmm(const, y, mu_iv_t).addmm_(y * y, iv_t, alpha=-0.5)
    log_norm = torch.logsumexp(log_comp, -1, keepdim=True)
    resp = torch.exp(log_comp - log_norm)  # (B, K)
    grad = y * (resp @ iv) - resp @ mu_iv
    return -log_norm.squeeze(-1), grad


class DoubleWell(Energy):
    r"""The separable multi-well :math:`F(y) = s \sum_{i=1}^d (y_i^2 - 1)^2`.

    It has exactly :math:`2^d` minima, at :math:`y \in \{-1, 1\}^d` with energy 0, and saddles
    or maxima wherever some :math:`y_i = 0`.

    Args:
        dim: the dimension d.
        scale: the factor s > 0.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.energies.DoubleWell(2)(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
        tensor([0., 2.])
    """

    def __init__(self, dim: int = 1, scale: float = 1.0) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.scale = check_positive(scale, "scale")
        self.y_shape = (dim,)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        _unconditional(self, x)
        return self.scale * ((y * y - 1) ** 2).sum(-1)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _unconditional(self, x)
        with torch.no_grad():
            u = y * y - 1
            return self.scale * (u * u).sum(-1), (4 * self.scale) * y * u


class Banana(Energy):
    r"""A Rosenbrock-style banana :math:`F(y) = s[(a - y_1)^2 + b (y_2 - y_1^2)^2]`.

    A single minimum at :math:`(a, a^2)` at the bottom of a curved, flat valley: the classic
    hard case for gradient descent and the reason for adaptive and quasi-Newton solvers.

    Args:
        a: position of the minimum. b: steepness of the valley walls. scale: overall factor s.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.energies.Banana()(torch.tensor([[1.0, 1.0]]))
        tensor([0.])
    """

    def __init__(self, a: float = 1.0, b: float = 10.0, scale: float = 1.0) -> None:
        super().__init__()
        self.a = float(a)
        self.b = check_positive(b, "b")
        self.scale = check_positive(scale, "scale")
        self.y_shape = (2,)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        _unconditional(self, x)
        y1, y2 = y[..., 0], y[..., 1]
        return self.scale * ((self.a - y1) ** 2 + self.b * (y2 - y1 * y1) ** 2)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _unconditional(self, x)
        with torch.no_grad():
            y1, y2 = y[..., 0], y[..., 1]
            u = y2 - y1 * y1
            e = self.scale * ((self.a - y1) ** 2 + self.b * u * u)
            g1 = self.scale * (-2 * (self.a - y1) - 4 * self.b * u * y1)
            g2 = self.scale * (2 * self.b * u)
            return e, torch.stack([g1, g2], -1)
