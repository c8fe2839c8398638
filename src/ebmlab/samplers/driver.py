"""``eb.sample``: run a kernel for many steps, with burn-in, thinning and step-size adaptation."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive_int
from ebmlab.energy import Energy
from ebmlab.samplers import diagnostics
from ebmlab.samplers.adaptation import DualAveraging
from ebmlab.samplers.state import State

__all__ = ["sample", "Chain", "Sampler"]


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


@dataclass(frozen=True)
class Chain:
    """The kept samples of a run of :func:`sample` and the per-step diagnostics.

    Attributes:
        samples: ``(T, chains, *y_shape)``, T = ``num_steps // thin``.
        energy: :math:`F(x, y)` of every sample, ``(T, chains)``.
        info: the kernel's Info record with every field stacked along T, ``(T, chains)``.
        step_size: the step size used after burn-in (adapted or as given).
        state: the final state, to continue the chains with ``sampler.step``.
    """

    samples: Tensor
    energy: Tensor
    info: NamedTuple
    step_size: float
    state: State

    def summary(self) -> dict[str, float]:
        """Return the headline diagnostics as numbers.

        Keys: ``num_samples``, ``num_chains``, ``step_size``, ``acceptance_rate`` (mean),
        ``num_divergent`` (total), ``ess_min`` and ``ess_mean`` (over coordinates) and
        ``r_hat_max`` (split R-hat; NaN with fewer than 4 samples per chain).
        """
        flat = self.samples.flatten(2)
        ess = diagnostics.ess(flat)
        r_hat = diagnostics.r_hat(flat) if flat.shape[0] >= 4 else torch.full_like(ess, math.nan)
        return {
            "num_samples": float(flat.shape[0]),
            "num_chains": float(flat.shape[1]),
            "step_size": float(self.step_size),
            "acceptance_rate": float(diagnostics.acceptance_rate(self.info).mean()),
            "num_divergent": float(diagnostics.num_divergent(self.info).sum()),
            "ess_min": float(ess.min()),
            "ess_mean": float(ess.mean()),
            "r_hat_max": float(r_hat.max()),
        }


def _stack_info(infos: list[Any]) -> Any:
    return type(infos[0])(*(torch.stack(field) for field in zip(*infos, strict=True)))


def sample(
    energy: Energy,
    y0: Tensor,
    sampler: Sampler,
    num_steps: int,
    x: Tensor | None = None,
    *,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Chain:
    r"""Run ``sampler`` on :math:`p(y|x) \propto e^{-\beta F(x, y)}` from ``y0``, one chain per row.

    The first ``burn_in`` steps are discarded; when the kernel has a ``target_acceptance``
    (MALA, HMC, NUTS) its step size is adapted during them by dual averaging and the
    averaged value is kept afterwards. Then ``num_steps`` steps are run and every ``thin``-th
    state is kept. Inputs are validated here once; the loop itself does no validation, no
    host synchronisation (except NUTS's early-stop reads, see :class:`~ebmlab.samplers.NUTS`)
    and builds no autograd graph.

    Args:
        energy: the energy F (any :class:`ebmlab.Energy`, including a ``FreeEnergy``).
        y0: the initial states ``(chains, *y_shape)``.
        sampler: a kernel, e.g. ``eb.samplers.MALA(0.05)``.
        num_steps: steps after burn-in (>= ``thin``).
        x: conditioning inputs ``(chains, *x_shape)`` or ``None``.
        burn_in: steps run and discarded first (and used for adaptation).
        thin: keep one state every ``thin`` steps.
        generator: the random source; the same generator state gives identical chains.
        progress: show a progress bar (tqdm).

    Returns:
        A :class:`Chain` with ``samples`` of shape ``(num_steps // thin, chains, *y_shape)``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``y0`` does not fit the energy, a count is out of range, or the
            energy at ``y0`` is not finite.

    Example:
        >>> import torch, ebmlab as eb
        >>> g = torch.Generator().manual_seed(0)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> chain = eb.sample(energy, torch.zeros(8, 2), eb.samplers.MALA(0.5), 100,
        ...                   burn_in=50, generator=g)
        >>> chain.samples.shape
        torch.Size([100, 8, 2])
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
    check_generator(generator)
    state = sampler.init(y0, energy, x)
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
        if burn_in and target is not None and hasattr(sampler, "with_step_size"):
            adapt = DualAveraging(float(step_size), target, state.energy)
            tuned = sampler
            for _ in steps(burn_in, "burn-in"):
                state, info = tuned.step(state, energy, x, generator=generator)
                tuned = sampler.with_step_size(adapt.update(info.acceptance_rate.mean()))
            step_size = adapt.final_step_size()
            if not (math.isfinite(step_size) and step_size > 0):
                warnings.warn(
                    f"step-size adaptation failed (got {step_size}); keeping "
                    f"step_size={sampler.step_size}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                step_size = float(sampler.step_size)
            kernel = sampler.with_step_size(step_size)
        else:
            step = sampler.step
            for _ in steps(burn_in, "burn-in") if burn_in else ():
                state, _info = step(state, energy, x, generator=generator)

        step = kernel.step
        positions: list[Tensor] = []
        energies: list[Tensor] = []
        infos: list[Any] = []
        for t in steps(num_steps, "sampling"):
            state, info = step(state, energy, x, generator=generator)
            if t % thin == thin - 1:  # every step when thin == 1
                positions.append(state.position)
                energies.append(state.energy)
                infos.append(info)
        return Chain(
            samples=torch.stack(positions),
            energy=torch.stack(energies),
            info=_stack_info(infos),
            step_size=float(step_size),
            state=state,
        )
