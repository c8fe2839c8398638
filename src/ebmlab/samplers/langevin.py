"""The unadjusted Langevin algorithm (ULA)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel
from ebmlab.samplers.hmc import DIVERGENCE_THRESHOLD
from ebmlab.samplers.integrators import axpy, langevin_step, reflect
from ebmlab.samplers.state import Info, State

__all__ = ["Langevin", "REFLECT_FRACTION"]

# With a box: a step whose gradient move -h grad F alone leaves the box by more than this
# fraction of the box's width (in some coordinate) is flagged divergent.
REFLECT_FRACTION = 0.1


class Langevin(Kernel):
    r"""The unadjusted Langevin algorithm for :math:`p(y) \propto e^{-\beta F(x, y)}`.

    One step is :math:`y' = y - h \nabla F(y) + \sqrt{2h/\beta}\,\xi` with
    :math:`\xi \sim \mathcal N(0, I)`. Without a Metropolis correction the chain is biased by
    :math:`O(h)`: on :math:`\mathcal N(0, \sigma^2)` its stationary variance is
    :math:`\sigma^2 / (1 - h / (2\sigma^2))`. Use :class:`MALA` to remove the bias.

    **Divergence.** Without an accept step nothing stops an unstable step size (h above
    2/L for curvature L) from blowing up, so each step is checked, at no extra energy
    evaluation: ``Info.is_divergent`` is set when the energy or gradient is not finite,
    when the step's Metropolis log-ratio (what :class:`MALA` would have used, the analogue of
    HMC's energy error) is below -1000, i.e. the move is far out of scale with the chain's
    own energy (an exploding chain), and, with a ``domain``, when the gradient move
    :math:`-h\nabla F(y)` alone leaves the box by more than ``REFLECT_FRACTION`` (10 %) of
    its width in some coordinate, since reflection would otherwise hide an unstable step
    (samples uniform on the box, no flag). :func:`ebmlab.sample` warns about flagged steps.

    Args:
        step_size: the step :math:`h > 0`; the noise scale :math:`\sqrt{2h/\beta}` follows.
        beta: the inverse temperature :math:`\beta > 0`.
        domain: optional :class:`ebmlab.Box`; steps leaving it are mirrored back in.

    Raises:
        ValueError: if ``step_size`` or ``beta`` is not a finite positive number.

    References:
        Roberts and Tweedie, "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli, 1996.

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.Langevin(step_size=0.01)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(4, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> state.position.shape, info.is_accepted.tolist()
        (torch.Size([4, 2]), [True, True, True, True])
    """

    target_acceptance = None

    def __init__(self, step_size: float, beta: float = 1.0, *, domain: Box | None = None) -> None:
        self._init_common(step_size, beta, domain)
        self._setup()

    def _setup(self) -> None:
        h = self.step_size
        self._neg_step = -h
        sqrt = torch.sqrt if isinstance(h, Tensor) else math.sqrt
        self._noise_scale = sqrt(2.0 * h / self.beta)
        self._constants: tuple[Tensor, Tensor, Tensor] | None = None

    def _accepted(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # ULA accepts every move: reuse one read-only triple of constant tensors (rate 1,
        # accepted, not divergent) while the batch keeps its shape, dtype and device (cheaper
        # than allocating, or a dict lookup).
        if torch.compiler.is_compiling():  # fresh constants: a cache would only add guards
            is_true = torch.ones(like.shape, dtype=torch.bool, device=like.device)
            return torch.ones_like(like), is_true, ~is_true
        triple = self._constants
        if (
            triple is None
            or triple[0].shape != like.shape
            or triple[0].dtype != like.dtype
            or triple[0].device != like.device
        ):
            is_true = torch.ones(like.shape, dtype=torch.bool, device=like.device)
            triple = self._constants = (torch.ones_like(like), is_true, ~is_true)
        return triple

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Make one Langevin step for every chain; returns the new state and its info."""
        return self.advance(state, self.draw(state.position, generator), energy, x)

    def lean_step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Make :meth:`step`'s move without the divergence check (``is_divergent`` all false).

        The same random numbers and the same new state as :meth:`step`; :func:`ebmlab.sample`
        uses it between its divergence checks (``check_every``).
        """
        return self.advance(state, self.draw(state.position, generator), energy, x, check=False)

    def draw(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor]:
        """Return the random numbers of one step, ``(noise,)``, drawn as :meth:`step` draws them."""
        return (torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device),)

    def draw_block(
        self, y: Tensor, num: int, generator: torch.Generator | None
    ) -> tuple[Tensor, ...] | None:
        """Return ``num`` steps' noises drawn at once, or ``None`` where that would differ.

        On the CPU a ``randn`` of ``num`` stacked blocks gives the same numbers, and leaves
        the generator in the same state, as ``num`` calls of :meth:`draw` when a block has a
        multiple of 16 elements (PyTorch fills normals 16 at a time); ``eb.sample`` then draws
        the noise of the steps between two divergence checks in one call. Elsewhere (CUDA,
        other sizes and dtypes, a subclass drawing otherwise) ``None``: draw step by step.
        """
        n = y.numel()
        if (
            y.device.type != "cpu"
            or y.dtype not in (torch.float32, torch.float64)
            or n % 16
            or type(self).draw is not Langevin.draw
            or type(self).advance is not Langevin.advance
        ):
            return None
        return torch.randn(
            (num, *y.shape), generator=generator, dtype=y.dtype, device=y.device
        ).unbind(0)

    @property
    def has_lean_loop(self) -> bool:
        """Whether :func:`ebmlab.sample` may run the chains through :meth:`move` and
        :meth:`lean_check` directly: no ``domain``, and Langevin's own ``draw`` and ``advance``
        (a subclass that changes them runs step by step)."""
        return (
            self.domain is None
            and type(self).advance is Langevin.advance
            and type(self).draw is Langevin.draw
        )

    def move(self, y: Tensor, grad: Tensor, noise: Tensor) -> Tensor:
        r"""Return the moved positions :math:`y - h\nabla F + \sqrt{2h/\beta}\,\xi` (no walls).

        The move of :meth:`advance` (the same two fused ops), for a loop that keeps the
        positions, energies and gradients itself.
        """
        neg_step, noise_scale = self._neg_step, self._noise_scale
        if isinstance(neg_step, Tensor) or isinstance(noise_scale, Tensor):
            return langevin_step(y, grad, neg_step, noise_scale, None, noise)[0]
        return torch.add(y, grad, alpha=neg_step).add_(noise, alpha=noise_scale)

    def log_ratio(
        self, y0: Tensor, e0: Tensor, y: Tensor, e: Tensor, grad: Tensor, noise: Tensor
    ) -> Tensor:
        """The Metropolis log-ratio of the move ``y0 -> y`` (what :class:`MALA` would use).

        Finite and above ``-DIVERGENCE_THRESHOLD`` unless the step exploded; NaN or infinite
        when the energy, gradient or position is not finite. :meth:`advance`'s divergence
        check; ``grad`` is the gradient at ``y``, ``noise`` the move's noise.
        """
        beta = self.beta
        back = axpy(y0 - y, self.step_size, grad)
        if isinstance(self.step_size, Tensor):
            log_ratio = (e0 - e) * beta - (back * back).flatten(1).sum(1) * (beta / 4.0) / (
                self.step_size.reshape(-1))
        else:
            diff = e0 - e if beta == 1.0 else (e0 - e).mul_(beta)  # x * 1.0 == x exactly
            log_ratio = diff.add_(
                (back * back).flatten(1).sum(1), alpha=-beta / (4.0 * float(self.step_size))
            )
        return log_ratio.add_((noise * noise).flatten(1).sum(1), alpha=0.5)

    def lean_check(
        self, y0: Tensor, e0: Tensor, y: Tensor, e: Tensor, grad: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The divergence check of a lean run: ``(is_divergent, is_non_finite)`` per chain.

        ``is_non_finite``: the log-ratio is not finite, i.e. the position, energy or
        gradient at ``y`` is not (a chain that went non-finite between two checks stays
        so); ``is_divergent``: that, or :meth:`advance`'s flag (log-ratio below
        ``-DIVERGENCE_THRESHOLD``).
        """
        log_ratio = self.log_ratio(y0, e0, y, e, grad, noise)
        bad = torch.isfinite(log_ratio).logical_not_()
        return (log_ratio >= -DIVERGENCE_THRESHOLD).logical_not_().logical_or_(bad), bad

    def advance(
        self,
        state: State,
        draws: tuple[Tensor],
        energy: Energy,
        x: Tensor | None = None,
        *,
        check: bool = True,
    ) -> tuple[State, Info]:
        """Make :meth:`step`'s move with its random numbers given (from :meth:`draw`).

        No random draw happens here, so the function can be compiled (``eb.sample(...,
        compile=True)``). ``check=False`` skips the divergence check.
        """
        y0, e0, g0 = state
        y, noise = langevin_step(y0, g0, self._neg_step, self._noise_scale, None, draws[0])
        if not check:
            if self.domain is not None:
                low, high = self.domain.bounds(y)
                y = reflect(y, None, low, high)[0]
            e, g = energy.energy_and_grad(y, x)
            rate, accepted, never = self._accepted(e)
            return State(y, e, g), Info(rate, accepted, never)
        overshoot = None
        if self.domain is not None:
            low, high = self.domain.bounds(y)
            # How far the gradient move alone lands outside the box, in box widths.
            drift = axpy(y0, self._neg_step, g0)
            out = torch.maximum(low - drift, drift - high).div_(high - low)
            overshoot = out.flatten(1).amax(1) > REFLECT_FRACTION
            y = reflect(y, None, low, high)[0]
        e, g = energy.energy_and_grad(y, x)
        # The MALA log-ratio of the move: finite and > -1000 unless the step exploded; NaN
        # (non-finite energy or gradient) fails the comparison too.
        log_ratio = self.log_ratio(y0, e0, y, e, g, noise)
        is_divergent = (log_ratio >= -DIVERGENCE_THRESHOLD).logical_not_()
        if overshoot is not None:
            is_divergent |= overshoot
        rate, accepted, _never = self._accepted(e)
        return State(y, e, g), Info(rate, accepted, is_divergent)
