"""One AIS pass over a temperature ladder, and the pilot-tuned transitions of :class:`AIS`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.partition._common import check_finite_energies, sample_distribution
from ebmlab.partition.crank_nicolson import CrankNicolsonLangevin
from ebmlab.partition.momentum import MomentumState, PersistentLeapfrog
from ebmlab.partition.path import TemperedEnergy
from ebmlab.samplers.hmc import HMC
from ebmlab.samplers.metropolis import nan_to_neginf
from ebmlab.samplers.random_walk import RandomWalkMetropolis, RandomWalkState
from ebmlab.samplers.state import State

__all__ = ["TRANSITIONS", "GRADIENT_KERNELS", "POOL_WINDOW", "Annealing", "PooledFit",
           "StepTuner", "Whitened", "make_transition", "has_gradient", "particle_chol",
           "shrunk_chol", "base_sample", "base_log_prob", "NormalLogProb"]

# The built-in transitions of AIS and the acceptance rate each is tuned towards by default.
TRANSITIONS = {"mala": 0.574, "hmc": 0.65, "random_walk": 0.3, "ghmc": 0.8, "pcnl": 0.7}
# The dense preconditioner shrinks the particles' covariance towards its diagonal with
# weight min(1, SHRINKAGE * D / C) (C particles in D dimensions).
SHRINKAGE = 2.0
# pCNL's reference at each pilot step is fitted from the particles of its 2m + 1 nearest
# steps (m = POOL_WINDOW), reweighted to that step's target. 10-D Gaussian, 1024 x 100,
# 90 %, 480 seeds: log Z RMSE 0.0125 with each step's own particles (m = 0); 0.0117 with
# the window in the main run only (m = 10 or 20); 0.0107 (m = 10) and 0.0109 (m = 20)
# when the pilot also runs on the fit from steps k - m .. k (its delta then tunes higher).
POOL_WINDOW = 10


def make_transition(kind: str, factor: Tensor, spread: Tensor, c: int,
                    shape: tuple[int, ...], num_leapfrog: int = 1,
                    chol: Tensor | None = None, momentum: float = 0.0,
                    mean: Tensor | None = None) -> Any:
    r"""Build the kernel of one AIS step for C chains per input, rows ordered (B, C).

    ``factor`` (B, 1, 1) times the particle ``spread`` (B, 1, D) is the random walk's scale
    per coordinate; for ``"mala"`` (one leapfrog step) and ``"hmc"`` the factor is the
    leapfrog step and the squared spread the inverse mass (a diagonal preconditioner), or,
    with ``chol`` (B, D, D), the Cholesky factor L of the particles' covariance: the kernel
    then runs in whitened coordinates :math:`z = L^{-1}y` (a dense preconditioner).
    ``"ghmc"`` is :class:`~ebmlab.partition.momentum.PersistentLeapfrog` with persistence
    ``momentum``, the same preconditioners. ``"pcnl"`` is
    :class:`~ebmlab.partition.crank_nicolson.CrankNicolsonLangevin` with :math:`\delta` =
    factor around the reference N(``mean`` (B, 1, D), :math:`LL^\top` or spread²).
    """
    b, d = spread.shape[0], spread.shape[-1]
    if kind == "random_walk":
        return RandomWalkMetropolis((factor * spread).expand(b, c, d).reshape(b * c, *shape))
    eps = factor.expand(b, c, 1).reshape(b * c, *([1] * len(shape)))
    if kind == "pcnl":
        scale = None if chol is not None else spread.expand(b, c, d).reshape(b * c, *shape)
        return CrankNicolsonLangevin(eps, mean.expand(b, c, d).reshape(b * c, *shape), scale, chol)
    if kind == "ghmc":
        scale = None if chol is not None else spread.expand(b, c, d).reshape(b * c, *shape)
        return PersistentLeapfrog(eps, momentum, scale, chol)
    kernel = HMC(1.0, num_leapfrog if kind == "hmc" else 1, target_acceptance=None)
    if chol is not None:
        return Whitened(kernel.with_step_size(eps), chol, c)
    mass = spread.square().reciprocal().expand(b, c, d).reshape(b * c, *shape)
    return kernel.with_mass(mass).with_step_size(eps)


def particle_chol(flat: Tensor) -> Tensor | None:
    """The Cholesky factor of the particles' covariance (B, C, D) -> (B, D, D), or ``None``.

    The sample covariance is shrunk towards its diagonal with weight min(1, 2D/C) (its
    off-diagonal entries are noisy with few particles per dimension); ``None`` (the diagonal
    preconditioner) when that weight is 1 or the factorisation fails.
    """
    centred = flat - flat.mean(1, keepdim=True)
    return shrunk_chol(centred.transpose(1, 2) @ centred / (flat.shape[1] - 1), flat.shape[1])


def shrunk_chol(cov: Tensor, count: float) -> Tensor | None:
    """The Cholesky factor of ``cov`` (B, D, D), estimated from ``count`` particles, shrunk
    towards its diagonal with weight min(1, 2D/count); ``None`` when that weight is 1 or
    the factorisation fails."""
    d = cov.shape[-1]
    w = min(1.0, SHRINKAGE * d / count)
    if w >= 1.0 or d < 2:
        return None
    diag = torch.diagonal(cov, dim1=1, dim2=2)
    shrunk = (1 - w) * cov + torch.diag_embed(w * diag + 1e-12 * diag.mean(1, keepdim=True))
    chol, bad = torch.linalg.cholesky_ex(shrunk)
    if bool(bad.any()) or not bool(torch.isfinite(chol).all()):
        return None
    return chol


class PooledFit:
    r"""Refit every pilot step's Gaussian from the particles of its 2m + 1 nearest steps.

    The particles handed to pilot step j follow (approximately) the tempered target of
    step j - 1, at position :math:`s_j` on the path; step k's kernel targets position
    :math:`t_k`. Their importance weights to step k's target are
    :math:`\log w = -(t_k - s_j)(\beta F + \log p_0)` (F already evaluated by the pilot,
    no extra evaluations), self-normalised per step and the steps combined in proportion
    to their effective sample sizes; the weighted mean, spread and shrunk covariance
    replace step k's. A step whose particles' F is unknown (the base draws) is left out;
    a step with no usable neighbour keeps its own fit.
    """

    def __init__(self, window: int, temperatures: list[Any], num_steps: int, beta: float,
                 log_p0: Any) -> None:
        self.window, self.num_steps, self.beta, self.log_p0 = window, num_steps, beta, log_p0
        self.temperatures = temperatures
        self.blocks: dict[int, tuple[Tensor, Tensor | None]] = {}

    def _position(self, i: int, like: Tensor) -> Tensor:
        t = self.temperatures[i]
        t = t.to(like) if isinstance(t, Tensor) else torch.full((like.shape[0],), float(t),
                                                                 dtype=like.dtype,
                                                                 device=like.device)
        return t.reshape(-1, 1)  # (B, 1)

    def add(self, k: int, flat: Tensor, f: Tensor | None) -> list[tuple[int, tuple]]:
        """Record step k's particles (B, C, D) and F (B*C,); return the steps now complete."""
        b, c = flat.shape[:2]
        a = None
        if f is not None and bool(torch.isfinite(f).all()):
            a = self.beta * f.reshape(b, c) + self.log_p0(flat.reshape(b * c, -1)
                                                          ).reshape(b, c)
        self.blocks[k] = (flat, a)
        done = k - self.window
        self.blocks.pop(done - self.window - 1, None)
        return [(done, self.fit(done))] if done >= 0 else []

    def finish(self, last: int) -> list[tuple[int, tuple]]:
        """The fits of the steps not yet complete after the pilot's last step ``last``."""
        return [(k, self.fit(k)) for k in range(max(0, last - self.window + 1), last + 1)]

    def fit(self, k: int, ahead: int | None = None
            ) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """(mean (B, 1, D), spread (B, 1, D), chol or None) for step k from steps
        k - m .. k + ``ahead`` (default m), or ``None``."""
        ns = self.num_steps
        flat0 = self.blocks[k][0]
        target = self._position(k // ns + 1, flat0)
        total, ys = [], []
        ahead = self.window if ahead is None else ahead
        for j in range(k - self.window, k + ahead + 1):
            if j not in self.blocks or self.blocks[j][1] is None:
                continue
            flat, a = self.blocks[j]
            log_w = -(target - self._position((j + ns - 1) // ns, flat)) * a  # (B, C)
            w = torch.softmax(log_w, dim=1)
            ess = 1.0 / w.square().sum(1, keepdim=True)  # (B, 1)
            total.append(ess * w)
            ys.append(flat)
        if not total:
            return None
        weights, y = torch.cat(total, 1), torch.cat(ys, 1)  # (B, N), (B, N, D)
        count = weights.sum(1, keepdim=True)  # the effective sample size (B, 1)
        weights = weights / count
        mean = (weights.unsqueeze(-1) * y).sum(1, keepdim=True)
        centred = y - mean
        cov = (centred * weights.unsqueeze(-1)).transpose(1, 2) @ centred
        n = float(count.min())
        cov = cov * (n / max(n - 1.0, 1.0))
        spread = torch.diagonal(cov, dim1=1, dim2=2).sqrt().clamp_min(1e-12).unsqueeze(1)
        return mean, spread, shrunk_chol(cov, flat0.shape[1])


class _WhitenedEnergy(Energy):
    """E(L z) and :math:`L^\top \nabla E(Lz)` for rows z (B*C, *shape); remembers the last y."""

    def __init__(self, energy: Energy, kernel: Whitened) -> None:
        super().__init__()
        self.energy, self.kernel, self.y_shape = energy, kernel, energy.y_shape
        self.last: tuple[Tensor, Tensor] | None = None

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        return self.energy.forward(self.kernel.to_y(z), x)

    def energy_and_grad(self, z: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = self.kernel.to_y(z)
        e, g = self.energy.energy_and_grad(y, x)
        self.last = (y, g)
        return e, self.kernel.pull_back(g)


class Whitened:
    """A gradient kernel run in whitened coordinates :math:`z = L^{-1} y`, per input.

    The target in z is the target in y up to the constant Jacobian, so the kernel leaves it
    invariant; an identity mass in z is the dense mass :math:`(LL^\top)^{-1}` in y. The
    chains' positions stay in y exactly: an accepted move takes the y at which the proposal
    was evaluated.
    """

    def __init__(self, kernel: HMC, chol: Tensor, c: int) -> None:
        self.kernel, self.chol, self.c = kernel, chol, c
        self.beta = 1.0

    def _rows(self, v: Tensor) -> Tensor:
        return v.reshape(self.chol.shape[0], self.c, -1)

    def to_y(self, z: Tensor) -> Tensor:
        """y = L z, rows (B*C, *shape)."""
        return (self._rows(z) @ self.chol.transpose(1, 2)).reshape(z.shape)

    def pull_back(self, g: Tensor) -> Tensor:
        """The gradient in z: :math:`L^\top g`."""
        return (self._rows(g) @ self.chol).reshape(g.shape)

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> State:
        return State(y0, *energy.energy_and_grad(y0, x))

    def step(self, state: State, energy: Energy, x: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[State, Any]:
        """One step of the inner kernel in z; the new state in y."""
        y, e, g = state
        rows = self._rows(y).transpose(1, 2)  # (B, D, C)
        z = torch.linalg.solve_triangular(self.chol, rows, upper=False).transpose(1, 2)
        inner = _WhitenedEnergy(energy, self)
        new, info = self.kernel.step(State(z.reshape(y.shape), e, self.pull_back(g)), inner, x,
                                     generator=generator)
        if inner.last is None:
            return state, info
        y_prop, g_prop = inner.last
        m = info.is_accepted.reshape(-1, *([1] * (y.ndim - 1)))
        return State(torch.where(m, y_prop, y), new.energy, torch.where(m, g_prop, g)), info


class StepTuner:
    """Choose the pilot's kernels: the particle spread times a factor tuned per temperature.

    The log factor moves by (last step's mean acceptance - target) at every step, so the
    kernels follow the changing width of the tempered targets; ``params`` records the
    (factor, spread, chol) of every step, which the main run reuses frozen. With ``pool``
    (a :class:`PooledFit`) and the pilot's ``run``, the recorded spread, covariance and
    mean of every step are refitted from neighbouring steps' particles as well; call
    :meth:`finish` after the pilot.
    """

    def __init__(self, kind: str, b: int, c: int, target_acceptance: float,
                 num_leapfrog: int = 1, momentum: float = 0.0,
                 pool: PooledFit | None = None, run: Annealing | None = None) -> None:
        self.kind, self.b, self.c, self.target = kind, b, c, target_acceptance
        self.num_leapfrog, self.momentum = num_leapfrog, momentum
        self.pool, self.run, self.last = pool, run, -1
        self.log_factor: Tensor | None = None
        self.params: list[tuple[Tensor, Tensor, Tensor | None]] = []  # (factor, spread, chol)
        self.means: list[Tensor] = []  # the particles' mean (B, 1, D) of every step (pCNL)

    def _initial(self, d: int) -> float:
        if self.kind == "random_walk":
            return 2.38 / math.sqrt(d)
        if self.kind == "pcnl":
            return 2.0  # the independence proposal (plus a gradient step), the cap
        if self.kind in ("mala", "ghmc"):
            return 1.65 * d ** (-1.0 / 6.0)  # Roberts and Rosenthal's optimal scaling
        return d ** -0.25

    def __call__(self, k: int, y: Tensor, info: Any) -> Any:
        flat = y.reshape(self.b, self.c, -1)  # (B*C, *shape) -> (B, C, D)
        if self.log_factor is None:
            self.log_factor = torch.full((self.b, 1, 1), math.log(self._initial(flat.shape[-1])),
                                         dtype=y.dtype, device=y.device)
        else:
            rate = info.acceptance_rate.reshape(self.b, self.c).mean(1)  # (B,)
            self.log_factor = (
                self.log_factor + (rate - self.target).reshape(self.b, 1, 1)
            ).clamp(math.log(1e-3), math.log(2.0 if self.kind == "pcnl" else 10.0))
        factor = self.log_factor.exp()
        fits: list[tuple[int, Any]] = []
        now = None
        if self.pool is not None:
            fits = self.pool.add(k, flat, self.run.energy_at_choice)
            now = self.pool.fit(k, 0)  # from this and the m earlier steps
            self.last = k
        if now is None:  # this step's own particles
            now = (flat.mean(1, keepdim=True), flat.std(1, keepdim=True).clamp_min(1e-12),
                   None if self.kind == "random_walk" else particle_chol(flat))
        mean, spread, chol = now
        mean = mean if self.kind == "pcnl" else None
        chol = chol if self.kind != "random_walk" else None
        self.params.append((factor, spread, chol))
        if mean is not None:
            self.means.append(mean)
        self._refit(fits)
        return make_transition(self.kind, factor, spread, self.c, tuple(y.shape[1:]),
                               self.num_leapfrog, chol, self.momentum, mean)

    def _refit(self, fits: list[tuple[int, Any]]) -> None:
        """Replace the recorded spread, chol (and pCNL mean) of the steps ``fits`` names."""
        for j, fit in fits:
            if fit is None:
                continue
            mean, spread, chol = fit
            if self.kind == "random_walk":
                chol = None
            self.params[j] = (self.params[j][0], spread, chol)
            if self.means:
                self.means[j] = mean

    def finish(self) -> None:
        """Refit the pilot's last steps (those without a full window of successors)."""
        if self.pool is not None and self.last >= 0:
            self._refit(self.pool.finish(self.last))


# The gradient kernels whose state starts (position, energy, gradient) and whose last
# evaluation in a step is at the proposal, kept exactly when accepted.
GRADIENT_KERNELS = (HMC, Whitened, PersistentLeapfrog, CrankNicolsonLangevin)


class _Memo(Energy):
    """The target energy F, remembering its last evaluation (points, F, ∇F or ``None``)."""

    def __init__(self, energy: Energy) -> None:
        super().__init__()
        self.energy, self.y_shape = energy, energy.y_shape
        self.last: tuple[Tensor, Tensor, Tensor | None] | None = None

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        f = self.energy.forward(y, x)
        self.last = (y, f, None)
        return f

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        f, g = self.energy.energy_and_grad(y, x)
        self.last = (y, f, g)
        return f, g


def _after_step(memo: _Memo, y: Tensor, cache: tuple[Tensor, Tensor | None] | None
                ) -> tuple[Tensor, Tensor | None] | None:
    """F (and ∇F) at the chains' new positions ``y``: the proposal's where it was accepted
    (the last evaluation, at the proposal, is in ``memo``), the old ones elsewhere."""
    if memo.last is None:
        return cache
    y_new, f_new, g_new = memo.last
    if cache is None or y_new.shape != y.shape:
        return None
    accepted = (y == y_new).flatten(1).all(1)
    f = torch.where(accepted, f_new, cache[0])
    if g_new is None or cache[1] is None:
        return f, None
    return f, torch.where(accepted.reshape(-1, *([1] * (y.ndim - 1))), g_new, cache[1])


class Annealing:
    """One AIS pass for fixed inputs; called with a chain count and a kernel chooser."""

    def __init__(
        self,
        energy: Energy,
        x: Tensor | None,
        base: Distribution,
        temperatures: list[float],
        beta: float,
        domain: Box | None,
        num_steps: int,
        generator: torch.Generator | None,
        *,
        is_uniform_on_domain: bool = False,
    ) -> None:
        self.energy, self.x, self.base = energy, x, base
        self.temperatures, self.beta, self.domain = temperatures, beta, domain
        self.num_steps, self.generator = num_steps, generator
        self.b = 1 if x is None else x.shape[0]
        # F at the rows handed to the last ``choose`` call (reuse=True), else None.
        self.energy_at_choice: Tensor | None = None
        self.is_uniform_on_domain = is_uniform_on_domain and domain is not None

    def base_log_prob(self) -> Any:
        """The function :math:`\\log p_0(y)` for rows (B*C, *shape) ordered (B, C)."""
        if self.is_uniform_on_domain:
            # log p0 is -log|box| inside; outside, the domain mask already gives +inf.
            log_volume = math.log(self.domain.volume)

            def uniform(y: Tensor) -> Tensor:
                return torch.full((y.shape[0],), -log_volume, dtype=y.dtype, device=y.device)

            return uniform
        return base_log_prob(self.base, self.b)

    @staticmethod
    def _init(kernel: Any, target: TemperedEnergy, y: Tensor, x_rows: Tensor | None,
              cache: tuple[Tensor, Tensor | None] | None, fast_init: bool) -> Any:
        """The kernel's state at ``y`` for ``target``, from ``cache`` where it can be reused."""
        if _reusable(kernel, cache):
            if isinstance(kernel, GRADIENT_KERNELS):
                return State(y, *target.combine_with_grad(y, cache))
            return RandomWalkState(position=y, energy=target.combine(y, cache[0]))
        if fast_init and isinstance(kernel, GRADIENT_KERNELS):
            return State(y, *target.energy_and_grad(y, x_rows))
        return kernel.init(y, target, x_rows)

    def __call__(
        self, c: int, choose: Any, *, y0: Tensor | None = None, reverse: bool = False,
        fast_init: bool = False, reuse: bool = False, record: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Run C chains per input; ``choose(k, y, info)`` returns the kernel of step k.

        ``y0`` (B*C, *shape), rows ordered (B, C), replaces the draws from the base (the
        reverse pass starts from target samples); ``reverse`` runs the ladder from 1 to 0.
        With ``fast_init`` a gradient kernel's state is built from one ``energy_and_grad``
        per temperature instead of the kernel's validating ``init``. With ``reuse`` (the
        built-in transitions only: the random walk and HMC/MALA, whose last evaluation in a
        step is at the proposal, kept exactly when accepted), F is evaluated once per step:
        the state at the next temperature is assembled from the F and ∇F already computed
        at the chains' positions (``TemperedEnergy.combine``), the same arithmetic as a
        fresh evaluation, at half the energy evaluations of MALA. A temperature of the ladder
        is a float or a tensor (B,) of one per input (``schedule="adaptive"``). With
        ``record`` the log-weight increments (B*C,) of every temperature are kept in
        ``self.increments``. A :class:`PersistentLeapfrog` chain keeps its momentum from one
        temperature to the next.

        Returns the chains (C, B, *y_shape) and their log weights (C, B).
        """
        b, x, generator = self.b, self.x, self.generator
        n = b * c
        x_rows = None
        if x is not None:  # (B, *x_shape) -> (B*C, *x_shape), chains of input b contiguous
            x_rows = x.unsqueeze(1).expand(b, c, *x.shape[1:]).reshape(n, *x.shape[1:])
        y = base_sample(self.base, b, c, generator) if y0 is None else y0  # (B*C, *shape)
        log_p0 = self.base_log_prob()
        shape = tuple(self.base.event_shape)
        log_w = torch.zeros(n, dtype=y.dtype, device=y.device)
        bad = torch.zeros((), dtype=torch.long, device=y.device)
        info = None
        temps = self.temperatures[::-1] if reverse else self.temperatures
        temps = [t if not isinstance(t, Tensor) else t.to(y.dtype).repeat_interleave(c)
                 for t in temps]  # per-input temperatures, one per row
        energy_prev = TemperedEnergy(self.energy, log_p0, temps[0], self.beta,
                                     self.domain).forward(y, x_rows)
        k = 0
        memo = _Memo(self.energy) if reuse else None
        cache: tuple[Tensor, Tensor | None] | None = None  # F (and ∇F) at the rows y
        self.increments: list[Tensor] = []
        momentum = None
        for t in temps[1:]:
            target = TemperedEnergy(memo or self.energy, log_p0, t, self.beta, self.domain)
            self.energy_at_choice = cache[0] if cache is not None else None
            kernel = choose(k, y, info)
            if memo is not None:
                memo.last = None
            state = self._init(kernel, target, y, x_rows, cache, fast_init)
            if memo is not None:
                if not target.has_target:  # F is not evaluated at t = 0: nothing to reuse
                    memo.last, cache = None, None
                elif memo.last is not None:
                    cache = memo.last[1:]
            if momentum is not None and isinstance(kernel, PersistentLeapfrog):
                state = MomentumState(*state[:3], momentum)
            bad += (torch.isnan(state.energy) | torch.isneginf(state.energy)).sum()
            # inf - inf (a chain outside the support of both) contributes weight 0.
            increment = nan_to_neginf(energy_prev - state.energy)
            if record:
                self.increments.append(increment)
            log_w = log_w + increment
            for i in range(self.num_steps):
                if i:
                    self.energy_at_choice = cache[0] if cache is not None else None
                    kernel = choose(k, state.position, info)
                if memo is not None:
                    memo.last = None
                state, info = kernel.step(state, target, x_rows, generator=generator)
                if memo is not None and target.has_target:
                    cache = _after_step(memo, state.position, cache)
                k += 1
            y, energy_prev = state.position, state.energy
            momentum = getattr(state, "momentum", None)
        check_finite_energies(bad, "AIS")
        log_w = nan_to_neginf(log_w)
        return y.reshape(b, c, *shape).transpose(0, 1), log_w.reshape(b, c).T


def _reusable(kernel: Any, cache: tuple[Tensor, Tensor | None] | None) -> bool:
    if cache is None:
        return False
    if isinstance(kernel, GRADIENT_KERNELS):
        return cache[1] is not None
    return isinstance(kernel, RandomWalkMetropolis)


def base_sample(
    base: Distribution, b: int, c: int, generator: torch.Generator | None
) -> Tensor:
    """Draw C chains per input; rows ordered (B, C)."""
    if tuple(base.batch_shape) == ():
        y = sample_distribution(base, (b, c), generator)
    else:
        y = sample_distribution(base, (c,), generator).transpose(0, 1)  # (C, B) -> (B, C)
    return y.reshape(b * c, *base.event_shape)


class NormalLogProb:
    """:math:`\\log p_0` of a (diagonal) normal base and its gradient in closed form.

    The same arithmetic as ``torch.distributions.Normal.log_prob`` (summed over the event
    dimensions of ``Independent``), and the gradient autograd would return, without
    building a graph at every AIS step; the sample is not validated.
    """

    def __init__(self, normal: Normal, event_dims: int) -> None:
        self.loc, self.scale, self.event_dims = normal.loc, normal.scale, event_dims
        self.var = self.scale**2
        self.log_scale = self.scale.log()
        self.neg_half_prec = -1.0 / (2 * self.var)

    def __call__(self, y: Tensor) -> Tensor:
        lp = (-((y - self.loc) ** 2) / (2 * self.var) - self.log_scale
              - math.log(math.sqrt(2 * math.pi)))
        return lp.flatten(lp.ndim - self.event_dims).sum(-1) if self.event_dims else lp

    def grad(self, y: Tensor) -> Tensor:
        """:math:`\\nabla_y \\log p_0(y)`."""
        return self.neg_half_prec * (2 * (y - self.loc))


def base_log_prob(base: Distribution, b: int) -> Any:
    """:math:`\\log p_0` for rows ordered (B, C), meeting base b for a batched base.

    A normal base (``Normal`` or ``Independent(Normal)``, unbatched) gets the closed form
    :class:`NormalLogProb`, whose ``grad`` the tempered energies use instead of autograd.
    """
    if tuple(base.batch_shape) == ():
        inner, dims = base, 0
        if isinstance(base, Independent):
            inner, dims = base.base_dist, base.reinterpreted_batch_ndims
        if (type(inner) is Normal and isinstance(inner.scale, Tensor)
                and inner.loc.ndim == dims and inner.scale.ndim == dims):
            return NormalLogProb(inner, dims)
        return base.log_prob

    def log_prob(y: Tensor) -> Tensor:
        # (B*C, *shape) -> (C, B, *shape) so that column b meets base b.
        yb = y.reshape(b, -1, *y.shape[1:]).transpose(0, 1)
        return base.log_prob(yb).transpose(0, 1).reshape(-1)

    return log_prob


def has_gradient(run: Annealing, energy: Energy, x: Tensor | None, base: Distribution,
                 device: torch.device) -> bool:
    """Whether the tempered target has a usable gradient at a few draws of the base.

    The draws come from a generator of their own, so the run's random stream is untouched.
    """
    b = run.b
    probe_gen = torch.Generator(device=device).manual_seed(0)
    y = base_sample(base, b, 2, probe_gen)
    x_rows = None if x is None else x.repeat_interleave(2, dim=0)
    target = TemperedEnergy(energy, run.base_log_prob(), 1.0, run.beta, run.domain)
    try:
        e, g = target.energy_and_grad(y, x_rows)
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    finite = torch.isfinite(e)
    return bool(torch.isfinite(g[finite]).all())
