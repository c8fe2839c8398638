r"""Annealed importance sampling of :math:`\log Z` on the geometric path from a tractable base."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, Uniform

from ebmlab._checks import check_positive_int, check_target_acceptance, check_tensor
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.partition._common import check_inputs, reference
from ebmlab.partition.annealing import (
    POOL_WINDOW,
    TRANSITIONS,
    Annealing,
    PooledFit,
    StepTuner,
    has_gradient,
    make_transition,
)
from ebmlab.partition.estimate import Estimate
from ebmlab.partition.ladder import adapt_ladder, nearest_params
from ebmlab.partition.momentum import check_momentum
from ebmlab.partition.path import ADAPTIVE_SCHEDULES, SCHEDULES, TemperedEnergy, schedule

__all__ = ["AIS", "TemperedEnergy", "schedule", "SCHEDULES"]


class AIS:
    r"""Estimate :math:`\log Z` by annealed importance sampling (Neal 2001).

    Chains start from a normalised base :math:`p_0` and move through the tempered targets
    :math:`\pi_k \propto e^{-E_{t_k}}` (:class:`TemperedEnergy`), each chain accumulating the
    log weight :math:`\sum_k (E_{t_{k-1}} - E_{t_k})(y_{k-1})` and then taking ``num_steps``
    steps of a transition kernel that leaves :math:`\pi_k` invariant; the mean weight is an
    unbiased estimate of :math:`Z / Z_0 = Z`.

    **Transitions.** By default (``kernel=None``) they use the gradient where the energy is
    differentiable: ``"ghmc"`` (below; the default since the seventh session, MALA before:
    0.0141 against 0.023 RMSE on a rotated 10-D Gaussian, 0.355 against 0.51 on
    ManyWell-32 at equal evaluations). ``"mala"`` is one leapfrog step of HMC
    preconditioned by the current
    spread of the particles (inverse mass = their per-coordinate variance), with a step size
    tuned at every temperature towards 57.4 % acceptance (with enough pilot particles per
    dimension, 2D < C, a dense preconditioner instead: their covariance shrunk towards its
    diagonal, the kernel run in whitened coordinates); an energy without a usable gradient
    (``energy_and_grad`` raises, or returns non-finite values) falls back to the random walk.
    ``kernel="hmc"`` takes ``num_leapfrog`` leapfrog steps (tuned towards 65 %),
    ``kernel="ghmc"`` is generalised HMC (Horowitz 1991): one leapfrog step per AIS step with
    the momentum kept from step to step, refreshed only partly,
    :math:`p \leftarrow \alpha p + \sqrt{1-\alpha^2}\,\xi` (``momentum`` = :math:`\alpha`,
    0.5 by default; tuned towards 80 %; :class:`~ebmlab.partition.momentum.PersistentLeapfrog`),
    ``kernel="pcnl"`` is preconditioned Crank-Nicolson Langevin
    (:class:`~ebmlab.partition.crank_nicolson.CrankNicolsonLangevin`) around a Gaussian fitted
    to the pilot's particles at each temperature (their mean and shrunk covariance, pooled
    over the 21 nearest pilot steps, each reweighted to that temperature:
    :class:`~ebmlab.partition.annealing.PooledFit`), its :math:`\delta \le 2` tuned towards
    70 %: near-independent draws where the tempered targets are nearly Gaussian (10-D: 0.0111
    against GHMC's 0.0168 over 240 runs), but not on multimodal ones (ManyWell-32: 0.50
    against 0.355), and
    ``kernel="random_walk"`` is the gradient-free random-walk Metropolis of earlier releases
    (scale = particle spread times a factor tuned towards 30 %; the default before 0.9). The
    tuned steps are learnt in a pilot run of ``max(16, num_chains // 4)`` chains and then
    frozen: adapting on the very particles whose weights are averaged would bias the
    estimate (by +0.15 in log Z on a 10-D Gaussian in our tests), while fixed kernels keep
    AIS unbiased for Z and the runs independent. The built-in transitions evaluate F once
    per step: the next temperature's state reuses the F and gradient already computed.
    Any kernel object with the samplers'
    interface, ``init(y0, energy, x=None) -> State`` and ``step(state, energy, x=None, *,
    generator) -> (State, Info)``, built with ``beta=1`` (the tempered target contains
    :math:`\beta`), is used as given, e.g. ``eb.samplers.MALA(0.05)``.

    **Ladder.** ``schedule="adaptive"`` (the default for the built-in transitions) spaces the
    temperatures by equal thermodynamic length: the pilot run (on the sigmoid ladder) also
    measures the spread :math:`\mathrm{sd}_t(U)` of :math:`U = dE_t/dt = \beta F + \log p_0`
    from its log-weight increments, and the main run's K temperatures, one ladder per input,
    split :math:`\int_0^1 \mathrm{sd}_t(U)\,dt` into K equal parts
    (:func:`~ebmlab.partition.ladder.equal_length_ladder`), which minimises the variance of
    the log weights under perfect mixing (Gelman and Meng 1998). The ladder and the kernels
    are frozen before the main run (each new temperature reuses the kernel tuned at the
    nearest pilot temperature), so AIS stays unbiased; it costs no extra evaluation. With a
    kernel object the default is ``"sigmoid"`` (``"adaptive"`` then adds a pilot run).

    The chains are split into ``num_runs`` independent runs; the estimate is
    :math:`\log` of the mean weight over all chains, and its standard error comes from the
    spread of the runs' estimates :math:`\hat Z_r` (delta method), which stays honest when a
    few heavy weights dominate. ESS is that of the final weights.

    **Bidirectional (reverse) AIS.** With ``bidirectional=True`` the same ladder is also run
    from the target back to the base (Grosse et al. 2015): chains started from samples of
    the target accumulate weights whose mean estimates :math:`1/Z` without bias. By Jensen's
    inequality the mean forward log weight is a stochastic *lower* bound on :math:`\log Z`
    and minus the mean reverse log weight a stochastic *upper* bound (Grosse et al.'s
    sandwich): in expectation they bracket :math:`\log Z`, with gaps that are the KL
    divergences between the forward and reverse chains' laws while their noise falls as
    :math:`1/\sqrt N`. The returned :class:`Estimate` carries them as ``lower`` and
    ``upper`` (``value`` stays the forward estimate); a wide gap says the ladder is too
    short. The reverse chains start from ``samples`` passed to :meth:`log_partition`
    (exact draws make the upper bound rigorous) or, by default, from the forward chains
    resampled by their weights (then it is only approximately a bound: when the forward run
    has not reached the target, neither have its samples). It costs a second pass.

    Args:
        num_chains: chains per input (a multiple of ``num_runs``).
        num_temperatures: K, the number of transitions.
        kernel: ``None`` (gradient transitions where possible), ``"mala"``, ``"hmc"``,
            ``"ghmc"``, ``"pcnl"``, ``"random_walk"`` (tuned per temperature), or a fixed transition
            kernel.
        base: ``"uniform"`` on the domain (the default; needs a domain), ``"gaussian"`` (the
            standard normal) or any ``torch.distributions.Distribution`` with event shape y's
            shape and batch shape () or (B,).
        num_runs: independent runs behind the standard error (at least 2).
        num_steps: kernel steps per temperature.
        schedule: ``None`` (``"adaptive"``, or ``"sigmoid"`` with a kernel object),
            ``"adaptive"``, ``"sigmoid"``, ``"linear"``, ``"geometric"`` or a tensor of
            increasing temperatures from 0 to 1 (then ``num_temperatures`` is its length - 1).
        target_acceptance: the acceptance rate the tuned kernels aim at; ``None``: 0.574 for
            MALA, 0.65 for HMC, 0.8 for GHMC, 0.7 for pCNL, 0.3 for the random walk.
        num_leapfrog: leapfrog steps of ``kernel="hmc"``.
        bidirectional: also run reverse AIS and report ``lower`` and ``upper`` bounds.
        momentum: the momentum persistence :math:`\alpha \in [0, 1)` of ``kernel="ghmc"``
            (``None``: 0.5); 0 is MALA.

    References:
        Neal, "Annealed Importance Sampling", Statistics and Computing 11, 2001,
        arXiv:physics/9803008. Grosse, Ghahramani and Adams, "Sandwiching the marginal
        likelihood using bidirectional Monte Carlo", 2015, arXiv:1511.02543 (sigmoid schedule,
        reverse AIS). Gelman and Meng, "Simulating normalizing constants: from importance
        sampling to bridge sampling to path sampling", Statistical Science 13, 1998. Horowitz,
        "A generalized guided Monte Carlo algorithm", Physics Letters B 268, 1991. Cotter,
        Roberts, Stuart and White, "MCMC methods for functions", Statistical Science 28, 2013.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2) * 4.0)
        >>> ais = eb.partition.AIS(num_chains=128, num_temperatures=50, bidirectional=True)
        >>> est = ais.log_partition(q, domain=eb.Box([-4, -4], [4, 4]),
        ...                         generator=torch.Generator().manual_seed(0))
        >>> abs(est.value.item() - q.log_partition()) < 4 * est.stderr.item()
        True
        >>> bool(est.lower <= est.upper)
        True
    """

    def __init__(
        self,
        num_chains: int = 256,
        num_temperatures: int = 100,
        *,
        kernel: Any = None,
        base: str | Distribution = "uniform",
        num_runs: int = 8,
        num_steps: int = 1,
        schedule: str | Tensor | None = None,
        target_acceptance: float | None = None,
        num_leapfrog: int = 3,
        bidirectional: bool = False,
        momentum: float | None = None,
    ) -> None:
        self.num_chains = check_positive_int(num_chains, "num_chains")
        self.num_runs = check_positive_int(num_runs, "num_runs", minimum=2)
        if num_chains % num_runs:
            raise ValueError(
                f"num_chains must be a multiple of num_runs = {num_runs}; got {num_chains}"
            )
        if isinstance(schedule, Tensor):
            check_tensor(schedule, "schedule")
            if schedule.ndim != 1 or schedule.shape[0] < 2:
                raise ValueError(
                    f"schedule must be 1-D with >= 2 entries; got shape {tuple(schedule.shape)}"
                )
            if not (schedule[0] == 0 and schedule[-1] == 1 and (schedule.diff() > 0).all()):
                raise ValueError("schedule must increase strictly from 0 to 1")
            num_temperatures = schedule.shape[0] - 1
        elif schedule is None:
            is_object = kernel is not None and not isinstance(kernel, str)
            schedule = "sigmoid" if is_object else "adaptive"
        elif schedule not in SCHEDULES + ADAPTIVE_SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES + ADAPTIVE_SCHEDULES} or a "
                             f"tensor; got {schedule!r}")
        self.schedule = schedule
        self.num_temperatures = check_positive_int(num_temperatures, "num_temperatures")
        if isinstance(kernel, str):
            if kernel not in TRANSITIONS:
                raise ValueError(
                    f"kernel must be None, one of {tuple(TRANSITIONS)} or a kernel; got {kernel!r}"
                )
        elif kernel is not None:
            if not all(callable(getattr(kernel, m, None)) for m in ("init", "step")):
                raise TypeError(
                    f"kernel must have init() and step() methods; got {type(kernel).__name__}"
                )
            if float(getattr(kernel, "beta", 1.0)) != 1.0:
                raise ValueError(
                    f"kernel must be built with beta=1 (the tempered energy contains beta); "
                    f"got beta={kernel.beta}"
                )
        self.kernel = kernel
        if isinstance(base, str):
            if base not in ("uniform", "gaussian"):
                raise ValueError(
                    f"base must be 'uniform', 'gaussian' or a Distribution; got {base!r}"
                )
        elif not isinstance(base, Distribution):
            raise TypeError(
                f"base must be 'uniform', 'gaussian' or a Distribution; got {type(base).__name__}"
            )
        self.base = base
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.target_acceptance = (None if target_acceptance is None
                                  else check_target_acceptance(target_acceptance))
        self.num_leapfrog = check_positive_int(num_leapfrog, "num_leapfrog")
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool; got {type(bidirectional).__name__}")
        self.bidirectional = bidirectional
        self.momentum = check_momentum(momentum)
        if self.momentum is not None and kernel != "ghmc":
            raise ValueError(f"momentum is the persistence of kernel='ghmc'; got kernel={kernel!r}")

    def __repr__(self) -> str:
        return (
            f"AIS(num_chains={self.num_chains}, num_temperatures={self.num_temperatures}, "
            f"num_runs={self.num_runs}, base={self.base!r}, kernel={self.kernel!r}, "
            f"bidirectional={self.bidirectional})"
        )

    def log_partition(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
        samples: Tensor | None = None,
    ) -> Estimate:
        r"""Return the AIS estimate of :math:`\log Z` per input, its stderr and the ESS.

        Args:
            energy: the energy F.
            x: inputs (B, *x_shape) or ``None``.
            beta: inverse temperature > 0.
            domain: the box the distribution lives on (required for the uniform base);
                ``None`` means all of :math:`\mathbb R^d`.
            generator: the source of randomness.
            samples: with ``bidirectional=True``, draws of the target to start the reverse
                chains from: ``(N, *y_shape)`` without ``x``, ``(N, B, *y_shape)`` with it
                (N a multiple of ``num_runs``); ``None`` resamples the forward chains.

        Returns:
            An :class:`Estimate` of shape ``()`` without ``x`` and ``(B,)`` with it (with
            ``lower`` and ``upper`` when bidirectional).

        Raises:
            ValueError: on bad shapes, a uniform base without a domain, an energy that
                returns NaN or :math:`-\infty`, or a gradient ``kernel`` without a gradient.
        """
        beta = check_inputs(energy, x, beta, domain, generator, is_domain_required=False)
        if samples is not None:
            check_tensor(samples, "samples")
            b = 1 if x is None else x.shape[0]
            shape = self._event_shape(energy, domain)
            want = (samples.shape[0], *shape) if x is None else (samples.shape[0], b, *shape)
            if tuple(samples.shape) != want or samples.shape[0] == 0:
                raise ValueError(f"samples must have shape (N, {'' if x is None else 'B, '}"
                                 f"*y_shape) = {want}; got {tuple(samples.shape)}")
            if x is None:
                samples = samples.unsqueeze(1)
        return self._log_partition(energy, x, beta=beta, domain=domain, generator=generator,
                                   samples=samples)

    def _log_partition(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
        samples: Tensor | None = None,
    ) -> Estimate:
        """:meth:`log_partition` without the argument checks (for ``eb.Gibbs``)."""
        y, log_w, run, choose = self._forward(energy, x, beta=beta, domain=domain,
                                              generator=generator)
        c, b = log_w.shape
        runs = log_w.T.reshape(b, self.num_runs, c // self.num_runs)  # (C, B) -> (B, R, C/R)
        run_log_z = torch.logsumexp(runs, 2) - math.log(c // self.num_runs)  # (B, R)
        est = Estimate.from_log_weights(run_log_z, dim=1)
        ess = Estimate.from_log_weights(log_w, dim=0).ess
        upper = None
        if self.bidirectional:
            rev = self._reverse(run, choose, y, log_w, samples, generator)  # (N, B)
            upper = -rev.mean(0)  # mean of log(1/w): a stochastic upper bound
        lower = log_w.mean(0)  # mean of log w: a stochastic lower bound
        squeeze = (lambda t: t[0]) if x is None else (lambda t: t)
        return Estimate(value=squeeze(est.value), stderr=squeeze(est.stderr), ess=squeeze(ess),
                        lower=squeeze(lower) if upper is not None else None,
                        upper=None if upper is None else squeeze(upper))

    @torch.no_grad()
    def weighted_samples(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run AIS; return the final chains (C, B, *y_shape) and log weights (C, B).

        B = 1 without ``x``. Resampling the chains by weight gives approximate samples of
        the Gibbs distribution.
        """
        beta = check_inputs(energy, x, beta, domain, generator, is_domain_required=False)
        return self._weighted_samples(energy, x, beta=beta, domain=domain, generator=generator)

    def _weighted_samples(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`weighted_samples` without the argument checks (for ``eb.Gibbs``)."""
        y, log_w, _, _ = self._forward(energy, x, beta=beta, domain=domain, generator=generator)
        return y, log_w

    @torch.no_grad()
    def _forward(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Annealing, Any]:
        """The forward pass: chains, log weights, the pass object and the kernel chooser."""
        dtype, device = reference(energy, x, domain)
        shape = self._event_shape(energy, domain)
        b = 1 if x is None else x.shape[0]
        base = self._base_distribution(domain, shape, b, dtype, device)
        adaptive = isinstance(self.schedule, str) and self.schedule in ADAPTIVE_SCHEDULES
        temperatures = (
            self.schedule.tolist() if isinstance(self.schedule, Tensor)
            else schedule(self.num_temperatures, "sigmoid" if adaptive else self.schedule,
                          dtype=torch.float64).tolist()
        )
        run = Annealing(energy, x, base, temperatures, beta, domain, self.num_steps, generator,
                        is_uniform_on_domain=isinstance(self.base, str) and self.base == "uniform")
        c = self.num_chains
        kernel = self.kernel
        pilot = max(16, c // 4)
        if kernel is not None and not isinstance(kernel, str):
            def choose(k: int, y: Tensor, info: Any) -> Any:
                return kernel

            if adaptive:  # a pilot run of the given kernel measures the ladder
                run(pilot, choose, record=True)
                adapt_ladder(run, self.num_temperatures)
            y, log_w = run(c, choose)
            return y, log_w, run, choose
        kind = kernel if kernel is not None else (
            "ghmc" if has_gradient(run, energy, x, base, device) else "random_walk")
        target = self.target_acceptance or TRANSITIONS[kind]
        alpha = 0.0 if kind != "ghmc" else self.momentum if self.momentum is not None else 0.5
        window = POOL_WINDOW if kind == "pcnl" else 0
        pool = (PooledFit(window, run.temperatures, self.num_steps, beta, run.base_log_prob())
                if window else None)
        tuner = StepTuner(kind, b, pilot, target, self.num_leapfrog, alpha, pool, run)
        try:
            run(pilot, tuner, fast_init=True, reuse=True, record=adaptive)
            tuner.finish()
        except (RuntimeError, NotImplementedError, TypeError) as err:
            if kind == "random_walk" or has_gradient(run, energy, x, base, device):
                raise
            raise ValueError(f"kernel={kind!r} needs the energy's gradient (energy_and_grad "
                             "failed); use kernel='random_walk' or None") from err
        params, leapfrog = tuner.params, self.num_leapfrog
        mean_of = tuner.means.__getitem__ if tuner.means else None  # pCNL's (frozen) references
        if adaptive:  # the main run's ladder; each step reuses the nearest pilot step's kernel
            pilot_temperatures = run.temperatures
            ladder = adapt_ladder(run, self.num_temperatures)
            params = nearest_params(params, pilot_temperatures, ladder, self.num_steps,
                                    tuner.means)
            mean_of = params.mean if tuner.means else None

        def fixed(k: int, y: Tensor, info: Any) -> Any:
            # The pilot's tuned step of input b, for every chain of the run (y's row count).
            factor, spread, chol = params[k]
            return make_transition(kind, factor, spread, y.shape[0] // b, tuple(y.shape[1:]),
                                   leapfrog, chol, alpha, None if mean_of is None else mean_of(k))

        y, log_w = run(c, fixed, fast_init=True, reuse=True)
        return y, log_w, run, fixed

    @torch.no_grad()
    def _reverse(self, run: Annealing, choose: Any, y: Tensor, log_w: Tensor,
                 samples: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Reverse AIS from target samples (N, B, *shape); return log weights of 1/Z (N, B)."""
        c, b = log_w.shape
        if samples is None:  # the forward chains resampled by weight, per input
            probs = torch.softmax(log_w.T, dim=1)  # (B, C)
            pick = torch.multinomial(probs, c, replacement=True, generator=generator)
            samples = torch.stack([y[pick[i], i] for i in range(b)], 1)  # (C, B, *shape)
        n = samples.shape[0]
        rows = samples.transpose(0, 1).reshape(b * n, *samples.shape[2:]).to(y.dtype)
        k_steps, ns = len(run.temperatures) - 1, self.num_steps

        def backwards(k: int, y: Tensor, info: Any) -> Any:
            # Reverse step k at temperature t_{K-1-m} uses the forward kernel tuned there
            # (the base's temperature t_0 borrows t_1's).
            m = k // ns
            block = max(k_steps - 2 - m, 0)
            return choose(block * ns + k % ns, y, info)

        built_in = self.kernel is None or isinstance(self.kernel, str)
        _, rev = run(n, backwards, y0=rows, reverse=True, fast_init=True, reuse=built_in)
        return rev

    @staticmethod
    def _event_shape(energy: Energy, domain: Box | None) -> tuple[int, ...]:
        if domain is not None:
            return domain.shape
        if energy.y_shape is not None:
            return tuple(energy.y_shape)
        raise ValueError("AIS needs a domain or an energy with y_shape to know y's shape")

    def _base_distribution(
        self, domain: Box | None, shape: tuple[int, ...], b: int, dtype: torch.dtype,
        device: torch.device,
    ) -> Distribution:
        if isinstance(self.base, Distribution):
            event, batch = tuple(self.base.event_shape), tuple(self.base.batch_shape)
            if event != shape:
                raise ValueError(
                    f"base has event_shape {event}; expected y's shape {shape} "
                    "(wrap per-coordinate distributions in torch.distributions.Independent)"
                )
            if batch not in ((), (b,)):
                raise ValueError(f"base has batch_shape {batch}; expected () or (B,) = ({b},)")
            return self.base
        if self.base == "gaussian":
            zeros = torch.zeros(shape, dtype=dtype, device=device)
            return Independent(Normal(zeros, torch.ones_like(zeros)), len(shape))
        if domain is None:
            raise ValueError("AIS with base='uniform' needs a domain; got domain=None")
        low, high = domain.bounds(torch.empty((), dtype=dtype, device=device))
        return Independent(Uniform(low, high, validate_args=False), len(shape))

