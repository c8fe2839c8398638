"""``eb.sample``: run a kernel with burn-in (per-chain adaptation), thinning and diagnostics."""

from __future__ import annotations

import math
import warnings
from typing import Any, Protocol

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive_int
from ebmlab._compile import check_compile
from ebmlab.energy import Energy
from ebmlab.samplers.adaptation import DualAveraging
from ebmlab.samplers.chain import (
    ESS_LIMIT,
    R_HAT_LIMIT,
    STUCK_ACCEPTANCE,
    Chain,
    stack_info,
    warn_if_troubled,
)
from ebmlab.samplers.diagnostics import STUCK_SPREAD, relative_spread
from ebmlab.samplers.loop import (
    DEFAULT_CHECK_EVERY,
    GRAD_DTYPES,
    ReducedPrecisionGrad,
    compiled_step,
    run_steps,
)
from ebmlab.samplers.mass import Welford, WindowVariance
from ebmlab.samplers.state import State

__all__ = [
    "sample",
    "Chain",
    "Sampler",
    "mass_windows",
    "R_HAT_LIMIT",
    "ESS_LIMIT",
    "STUCK_ACCEPTANCE",
    "MIN_MASS_BURN_IN",
    "MIN_MOVEMENT_WINDOW",
    "SHARE_STEP_SPREAD",
    "SHARE_STEP_LOG_SPREAD",
    "SHARE_STEP_KEEP",
]

# Diagonal mass adaptation needs a burn-in of at least this many steps (Stan's 75 + 25 + 50).
MIN_MASS_BURN_IN = 150
# The stuck test at the end of burn-in looks at movement when its window has this many steps.
MIN_MOVEMENT_WINDOW = 20
# Per-chain steps move towards their median (by SHARE_STEP_KEEP) when the chains'
# between/within variance ratio over the last adaptation window is below this on every
# coordinate (they mix as one) ...
SHARE_STEP_SPREAD = 0.5
# ... and the robust spread (IQR / 1.349) of their log within-window variances in the adapted
# metric is below this: above what chains on one target show over a 50-step window (<= 1.05
# on the benchmark targets), below two equal groups of chains whose variances differ 7.5x.
SHARE_STEP_LOG_SPREAD = 1.5
# Chains that mix as one keep this fraction of their log step's distance from the median.
SHARE_STEP_KEEP = 0.5
# The interquartile range of a normal distribution in standard deviations.
_IQR_PER_SD = 1.349


class Sampler(Protocol):
    """What :func:`sample` needs from a kernel."""

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> State: ...

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Any]: ...


def mass_windows(burn_in: int) -> list[int]:
    """Return the steps (counted from 0) at which the diagonal mass matrix is re-estimated.

    Stan's schedule: an initial fast interval of 75 steps (step size only), slow windows of
    25, 50, 100, ... steps (each ends with a mass update from that window's draws and a
    restart of the step-size adaptation), the last one stretched to end where a terminal
    fast interval of 50 steps begins. Empty below ``MIN_MASS_BURN_IN`` = 150 steps.

    Example:
        >>> mass_windows(1000)
        [100, 150, 250, 450, 950]
        >>> mass_windows(100)
        []
    """
    if burn_in < MIN_MASS_BURN_IN:
        return []
    init_buffer, term_buffer, size = 75, 50, 25
    end_slow = burn_in - term_buffer
    ends: list[int] = []
    start = init_buffer
    while True:
        end = start + size
        if end + 2 * size > end_slow:
            ends.append(end_slow)
            return ends
        ends.append(end)
        start, size = end, 2 * size


def _per_chain_view(t: Tensor, ndim: int) -> Tensor:
    return t.reshape(t.shape[0], *([1] * (ndim - 1)))


def _adapt(
    sampler: Any,
    state: Any,
    energy: Energy,
    x: Tensor | None,
    burn_in: int,
    *,
    per_chain: bool,
    adapt_mass: bool,
    generator: torch.Generator | None,
    steps: Any,
) -> tuple[Any, Any, dict[str, Any]]:
    """Run the burn-in with step-size (and mass) adaptation; return the state, the tuned
    kernel and what the Chain reports about it."""
    y = state.position
    chains, ndim = y.shape[0], y.ndim
    target = sampler.target_acceptance
    beta = float(getattr(sampler, "beta", 1.0))
    h0 = sampler.step_size
    windows = mass_windows(burn_in) if adapt_mass and hasattr(sampler, "with_mass") else []
    if per_chain:
        start = torch.full((chains,), float(h0), dtype=state.energy.dtype, device=y.device)
        adapt = DualAveraging(start, target, state.energy)
    else:
        adapt = DualAveraging(float(h0), target, state.energy)
    base = sampler
    mass = None
    # The slow windows start after 75 fast steps; each ends at the next of ``windows``.
    ends = iter(windows)
    start, end = 75, next(ends, None)
    welford = WindowVariance(y, end - start) if end is not None else None
    stuck_window = (burn_in - windows[-1]) if windows else max(1, min(50, burn_in // 10))
    accept_sum = torch.zeros(chains, dtype=state.energy.dtype, device=y.device)
    # Movement over the same window (a chain can accept a tiny step and not move at all).
    moved = Welford(y) if stuck_window >= MIN_MOVEMENT_WINDOW else None

    def with_step(h: Tensor) -> Any:
        return base.with_step_size(_per_chain_view(h, ndim) if per_chain else h)

    tuned = sampler
    for t in steps(burn_in, "burn-in"):
        state, info = tuned.step(state, energy, x, generator=generator)
        rate = info.acceptance_rate
        h = adapt.update(rate if per_chain else rate.mean())
        if t >= burn_in - stuck_window:
            accept_sum += rate
            if moved is not None:
                moved.update(state.position)
        if welford is not None and t >= start:
            welford.update(state.position)
            if t + 1 == end:
                var = welford.variance("partial" if per_chain else "full")
                mass = 1.0 / (beta * var)  # M^{-1} = beta * Var: unit frequencies
                base = sampler.with_mass(mass)
                current = adapt.log_step.exp()
                adapt = DualAveraging(current, target, state.energy) if per_chain else (
                    DualAveraging(float(current), target, state.energy))
                start, end = end, next(ends, None)
                welford = WindowVariance(y, end - start) if end is not None else None
                h = current
        tuned = with_step(h)
    # The averaged step size of the last adaptation interval; a failed one keeps the start.
    if per_chain:
        final = adapt.final()
        good = torch.isfinite(final) & (final > 0)
        final = torch.where(good, final, torch.full_like(final, float(h0)))
    else:
        value = adapt.final_step_size()
        if not (math.isfinite(value) and value > 0):
            warnings.warn(
                f"step-size adaptation failed (got {value}); keeping step_size={h0}",
                RuntimeWarning,
                stacklevel=3,
            )
            value = float(h0)
        final = value
    report: dict[str, Any] = {"num_reinitialised": 0, "num_stuck": 0}
    stuck = (accept_sum / stuck_window) < STUCK_ACCEPTANCE
    if moved is not None:
        stuck |= relative_spread(moved.m2) < STUCK_SPREAD
    num_stuck = int(stuck.sum())  # one host read, at the end of burn-in
    if per_chain and moved is not None and chains - num_stuck >= 3:
        final = _shared_if_mixed(final, moved, ~stuck, mass)
    if num_stuck and per_chain and num_stuck < chains:
        healthy = (~stuck).nonzero().flatten()
        bad = stuck.nonzero().flatten()
        donors = healthy[torch.randint(healthy.numel(), (bad.numel(),), generator=generator,
                                       device=generator.device if generator else None
                                       ).to(healthy.device)]
        state = type(state)(*(_copy_rows(f, bad, donors, chains) for f in state))
        final = final.clone()
        final[bad] = final[donors]
        if mass is not None and mass.ndim == ndim:
            mass = mass.clone()
            mass[bad] = mass[donors]
            base = sampler.with_mass(mass)
        report["num_reinitialised"] = num_stuck
    else:
        report["num_stuck"] = num_stuck
    kernel = base.with_step_size(_per_chain_view(final, ndim) if per_chain else final)
    report["mass"] = mass
    report["step_sizes"] = final if per_chain else None
    report["step_size"] = float(final.median()) if per_chain else float(final)
    return state, kernel, report


def _shared_if_mixed(final: Tensor, moved: Welford, healthy: Tensor, mass: Tensor | None
                     ) -> Tensor:
    r"""Per-chain steps moved halfway (in log) to the healthy chains' median when the chains
    sample one distribution.

    Over the last adaptation window, per coordinate, the variance of the healthy chains'
    means over their mean within-chain variance (:math:`B/W`) is about :math:`\tau/n` for
    chains on one target (:math:`\tau` the autocorrelation time, :math:`n` the window's
    steps), and their within-chain variances in the adapted metric (times the chain's mass)
    agree to the noise of :math:`n/\tau` draws. When :math:`B/W` is below
    ``SHARE_STEP_SPREAD`` = 0.5 and the robust spread (interquartile range / 1.349) of the
    log metric variances below ``SHARE_STEP_LOG_SPREAD`` = 1.5 on every coordinate, each
    chain's step partly measured the region it crossed in that window rather than the
    target, and its log step keeps ``SHARE_STEP_KEEP`` = 0.5 of its distance from the
    median. Measured on NUTS (12 runs of 16 chains, ESS per 1,000 gradients): banana 5.17
    per chain, 5.77 all at the median, 5.59 halfway; 2-D Gaussian (6 runs) 15.16, 14.65 and
    15.17 (the spread of steps acts as a step-size jitter there). Chains that are not mixed
    with each other (separated modes, a funnel's neck and mouth, inputs ``x`` of different
    location or, without a mass to absorb it, of different scale) keep their own steps.
    One host read.
    """
    count = max(moved.count - 1, 1)
    var = moved.m2[healthy] / count
    within = var.mean(0)
    between = moved.mean[healthy].var(0)
    tiny = torch.finfo(var.dtype).tiny
    ratio = between / within.clamp(min=tiny)
    metric = var if mass is None or mass.shape != moved.m2.shape else var * mass[healthy]
    log_metric = metric.clamp(min=tiny).log().reshape(metric.shape[0], -1)
    q = torch.quantile(log_metric, torch.tensor([0.25, 0.75], dtype=var.dtype,
                                                device=var.device), dim=0)
    spread = (q[1] - q[0]) / _IQR_PER_SD
    if bool((ratio.max() < SHARE_STEP_SPREAD) & (spread.max() < SHARE_STEP_LOG_SPREAD)):
        centre = final[healthy].median().log()
        return (centre + SHARE_STEP_KEEP * (final.log() - centre)).exp()
    return final


def _copy_rows(field: Any, bad: Tensor, donors: Tensor, chains: int) -> Any:
    if isinstance(field, Tensor) and field.ndim >= 1 and field.shape[0] == chains:
        field = field.clone()
        field[bad] = field[donors]
    return field


def sample(
    energy: Energy,
    y0: Tensor,
    sampler: Sampler,
    num_steps: int,
    x: Tensor | None = None,
    *,
    burn_in: int = 0,
    thin: int = 1,
    adapt: str = "per_chain",
    adapt_mass: str = "diag",
    generator: torch.Generator | None = None,
    progress: bool = False,
    keep: str = "all",
    check_every: int = DEFAULT_CHECK_EVERY,
    compile: bool | str = False,
    grad_dtype: torch.dtype | None = None,
) -> Chain:
    r"""Run ``sampler`` on :math:`p(y|x) \propto e^{-\beta F(x, y)}` from ``y0``, one chain per row.

    The first ``burn_in`` steps are discarded and, when the kernel has a
    ``target_acceptance`` (MALA, HMC, NUTS), used for adaptation:

    - ``adapt="per_chain"`` (default): every chain tunes its own step size by dual averaging
      on its own acceptance rate (Hoffman and Gelman 2014), so one chain in a bad region
      cannot drag the others' step down, nor keep a step too large for itself;
      ``adapt="shared"``: one step size for all, tuned on the mean acceptance (the behaviour
      of earlier releases, with ``adapt_mass="none"``).
    - ``adapt_mass="diag"`` (default): with ``burn_in >= 150``, a diagonal mass matrix
      :math:`M^{-1} = \beta\,\widehat{\mathrm{Var}}[y]` is estimated in Stan's windows
      (:func:`mass_windows`) and the step-size adaptation restarts after each update;
      ``"none"`` keeps the kernel's mass. With ``adapt="per_chain"`` every chain has its own
      mass, *partially pooled*: each chain's log variances are shrunk towards their mean over
      the chains by how much of their spread the window's noise explains (positive-part
      James-Stein, :func:`ebmlab.samplers.mass.partially_pooled`), so chains on one target
      share one estimate made of all their draws, and chains in different regions (a
      funnel's neck, different inputs ``x``) keep their own; ``adapt="shared"`` uses the mean
      of the within-chain variances.
    - A chain whose mean acceptance over the last adaptation window is below 1 %
      (``STUCK_ACCEPTANCE``), or, when that window has at least 20 steps, whose positions
      over it vary far less than the median chain's (``eb.diagnostics.relative_spread``
      below ``STUCK_SPREAD`` = 0.01: a chain deep in a funnel's neck that accepts a tiny
      step and does not move), is stuck; with per-chain adaptation it is
      restarted from the state, step size and mass of a randomly chosen healthy chain
      before sampling starts, and counted in ``Chain.num_reinitialised``.
    - At the end of a per-chain burn-in whose last window has at least 20 steps, chains that
      mix as one (on every coordinate, the variance of the healthy chains' window means
      below ``SHARE_STEP_SPREAD`` = 0.5 of their within-chain variance, and their log
      variances in the adapted metric within a robust spread of ``SHARE_STEP_LOG_SPREAD``)
      move their log steps halfway to the healthy chains' median: a chain's own step partly
      reflects the region it crossed in that window, not the target. Chains that do not mix
      (different ``x``, separated modes) keep their own (``Chain.step_sizes``).

    Then ``num_steps`` steps are run and every ``thin``-th state is kept (``keep="last"``:
    only the last of those, so nothing else is stored). Inputs are validated here once; the
    loop itself does no validation, no host synchronisation (except NUTS's early-stop reads,
    see :class:`~ebmlab.samplers.NUTS`) and builds no autograd graph.

    Speed (see ``docs/performance.md``):

    - ``check_every``: Langevin's divergence check (a few ops per step) runs every
      ``check_every`` steps (default 10) and at the last step; a check that finds a chain
      non-finite flags it divergent in every kept sample since the previous check, so a NaN
      sample is never reported as valid. ``check_every=1`` checks every step, and so does
      Langevin with a ``domain`` (reflection can hide an unstable step), MALA and HMC (their
      check is one op, and rejection keeps their states finite).
    - ``compile=True`` (or ``"cuda-graph"`` on CUDA): the step of Langevin, MALA and HMC is
      compiled with ``torch.compile`` (one compilation per run, ~20 s on a CPU; an adapting
      burn-in runs eager, the step after it is compiled). The random numbers are drawn
      eagerly in the same order, so the chains equal the eager ones to float rounding. If
      compilation fails, one ``UserWarning`` says why and the run continues eagerly.
    - ``grad_dtype=torch.bfloat16`` or ``torch.float16``: ``energy_and_grad`` runs under
      ``torch.autocast`` at that dtype (matrix products in reduced precision); states,
      energies and the accept/reject arithmetic stay in ``y0``'s dtype. MALA and HMC are then
      exact for the energy as evaluated in reduced precision. Float64 inputs stay float64.

    At the end the run is checked, and one :class:`ebmlab.SamplerWarning` names every figure
    that says the samples should not be trusted: divergent steps after burn-in, a
    rank-normalised :math:`\hat R` above 1.01, a bulk ESS below 100 (both over all chains, or
    1,024 evenly spaced ones when there are more, see :meth:`Chain.summary`; worst
    coordinate, with at least 4 kept samples) and stuck chains. A healthy run is
    silent; :meth:`Chain.summary` reports the same figures.

    Args:
        energy: the energy F (any :class:`ebmlab.Energy`, including a ``FreeEnergy``).
        y0: the initial states ``(chains, *y_shape)``, in the energy's dtype and device.
        sampler: a kernel, e.g. ``eb.samplers.MALA(0.05)``.
        num_steps: steps after burn-in (>= ``thin``).
        x: conditioning inputs ``(chains, *x_shape)`` or ``None``.
        burn_in: steps run and discarded first (and used for adaptation).
        thin: keep one state every ``thin`` steps.
        adapt: ``"per_chain"`` or ``"shared"`` step-size adaptation.
        adapt_mass: ``"diag"`` or ``"none"``.
        generator: the random source; the same generator state gives identical chains.
        progress: show a progress bar (tqdm).
        keep: ``"all"`` (every ``thin``-th state) or ``"last"`` (only the last of them).
        check_every: steps between Langevin's divergence checks (>= 1).
        compile: ``False``, ``True`` (``"default"``) or ``"cuda-graph"``.
        grad_dtype: ``None``, ``torch.bfloat16`` or ``torch.float16``.

    Returns:
        A :class:`Chain` with ``samples`` of shape ``(num_steps // thin, chains, *y_shape)``
        (``(1, chains, *y_shape)`` with ``keep="last"``).

    Raises:
        TypeError: if an argument has the wrong type, ``y0``'s dtype differs from the
            energy's, or the energy returns something other than a floating tensor.
        ValueError: if ``y0`` has no chains or does not fit the energy, a count is out of
            range, or the energy at ``y0`` is not finite or not of shape ``(chains,)``.

    Warns:
        SamplerWarning: when the run shows divergences, R-hat > 1.01, bulk ESS < 100 or
            stuck chains.

    Example:
        >>> import torch, ebmlab as eb
        >>> g = torch.Generator().manual_seed(0)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> chain = eb.sample(energy, torch.zeros(8, 2), eb.samplers.MALA(0.5), 200,
        ...                   burn_in=200, generator=g)
        >>> chain.samples.shape
        torch.Size([200, 8, 2])
        >>> 0.4 < chain.summary()["acceptance_rate"] < 0.75
        True
    """
    if not (callable(getattr(sampler, "init", None)) and callable(getattr(sampler, "step", None))):
        raise TypeError(
            f"sampler must be a kernel with init() and step(), e.g. eb.samplers.MALA(0.1); "
            f"got {type(sampler).__name__}"
        )
    num_steps = check_positive_int(num_steps, "num_steps")
    burn_in = check_positive_int(burn_in, "burn_in", minimum=0)
    thin = check_positive_int(thin, "thin")
    if num_steps < thin:
        raise ValueError(f"num_steps must be >= thin = {thin} to keep a sample; got {num_steps}")
    if adapt not in ("per_chain", "shared"):
        raise ValueError(f"adapt must be 'per_chain' or 'shared'; got {adapt!r}")
    if adapt_mass not in ("diag", "none"):
        raise ValueError(f"adapt_mass must be 'diag' or 'none'; got {adapt_mass!r}")
    check_generator(generator)
    if keep not in ("all", "last"):
        raise ValueError(f"keep must be 'all' or 'last'; got {keep!r}")
    check_every = check_positive_int(check_every, "check_every")
    mode = check_compile(compile)
    _check_grad_dtype(grad_dtype)
    run_energy = energy
    if grad_dtype is not None and isinstance(energy, Energy):
        run_energy = ReducedPrecisionGrad(energy, grad_dtype)
    if isinstance(y0, Tensor) and (y0.ndim == 0 or y0.shape[0] == 0):
        raise ValueError(f"y0 must hold at least one chain (chains, *y_shape); got shape "
                         f"{tuple(y0.shape)}")
    state = sampler.init(y0, run_energy, x)
    bad = ~torch.isfinite(state.energy)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"y0: the energy is not finite at rows {rows} (first five shown)")

    def steps(n: int, desc: str) -> Any:
        if not progress:
            return range(n)
        from tqdm.auto import trange

        return trange(n, desc=desc)

    with torch.no_grad():
        kernel = sampler
        target = getattr(sampler, "target_acceptance", None)
        step_size = getattr(sampler, "step_size", math.nan)
        if isinstance(step_size, Tensor) and step_size.numel() > 1:  # per-chain steps given
            step_size = float(step_size.median())
        report: dict[str, Any] = {}
        if burn_in and target is not None and hasattr(sampler, "with_step_size"):
            state, kernel, report = _adapt(
                sampler, state, run_energy, x, burn_in, per_chain=adapt == "per_chain",
                adapt_mass=adapt_mass == "diag", generator=generator, steps=steps,
            )
            step_size = report["step_size"]
        # One compiled step for the burn-in without adaptation and the sampling (the kernel
        # is the same); an adapted kernel is compiled after its burn-in.
        fast = compiled_step(sampler, mode) if kernel is sampler else None
        if burn_in and kernel is sampler:
            state = run_steps(
                sampler, state, run_energy, x, burn_in, thin=1, keep="none",
                check_every=check_every, fast=fast, generator=generator, steps=steps,
                desc="burn-in",
            )[0]
        if kernel is not sampler:
            fast = compiled_step(kernel, mode)
        state, positions, energies, infos, divergent = run_steps(
            kernel, state, run_energy, x, num_steps, thin=thin, keep=keep,
            check_every=check_every, fast=fast, generator=generator, steps=steps,
        )
        chain = Chain(
            samples=torch.stack(positions),
            energy=torch.stack(energies),
            info=stack_info(infos),
            step_size=float(step_size),
            state=state,
            step_sizes=report.get("step_sizes"),
            mass=report.get("mass"),
            kernel=kernel,
            num_divergent=divergent,
            num_reinitialised=report.get("num_reinitialised", 0),
            num_stuck=report.get("num_stuck", 0),
        )
    warn_if_troubled(chain)
    return chain


def _check_grad_dtype(grad_dtype: object) -> None:
    if grad_dtype is None:
        return
    if not isinstance(grad_dtype, torch.dtype):
        raise TypeError(
            f"grad_dtype must be None, torch.bfloat16 or torch.float16; got "
            f"{type(grad_dtype).__name__}"
        )
    if grad_dtype not in GRAD_DTYPES:
        raise ValueError(
            f"grad_dtype must be None, torch.bfloat16 or torch.float16; got {grad_dtype}"
        )
