r"""Negatives: the "offending" answers whose energy a contrastive loss pushes up.

Every negative source is a small object called as ``negatives(energy, y, x=None, *,
generator)``; it returns one negative per positive, shaped like ``y`` (B, *y_shape), or ``num``
per positive, (B, num, *y_shape). All randomness comes from ``generator``: with the same
generator state the result is bit-identical on CPU. Sources that keep state across calls (a
replay buffer) expose ``state_dict()`` / ``load_state_dict()`` holding tensors only, which
:func:`ebmlab.fit` stores in its checkpoints. ``MostOffending`` (found by inference) lives in
:mod:`ebmlab.training.most_offending`, the noise sources ``Uniform`` and ``Gaussian`` in
:mod:`ebmlab.training.noise`, ``Shuffled`` in :mod:`ebmlab.training.shuffled`; all are
re-exported here with the others.

References:
    LeCun, Chopra, Hadsell, Ranzato & Huang, "A Tutorial on Energy-Based Learning", 2006
    (most offending incorrect answer, section 2.2).
    Hinton, "Training Products of Experts by Minimizing Contrastive Divergence", 2002.
    Tieleman, "Training Restricted Boltzmann Machines using Approximations to the Likelihood
    Gradient", 2008 (persistent chains).
    Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019,
    arXiv:1903.08689 (replay buffer with 5 % re-initialisation).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from ebmlab._checks import check_fraction, check_positive, check_positive_int, check_tensor
from ebmlab._compile import check_compile
from ebmlab.domain import Box, check_box
from ebmlab.energy import Energy
from ebmlab.training.adjusted import (
    AUTO_JUMP_MAX_DIM,
    AUTO_JUMPS,
    bounding_box,
    metropolis_langevin,
    start_step,
    uniform_jumps,
)
from ebmlab.training.compiled_negatives import (
    compiled_langevin,
    draw_noise,
    traceable_energy_and_grad,
)
from ebmlab.training.most_offending import MostOffending
from ebmlab.training.noise import Gaussian, Uniform
from ebmlab.training.replay import DataRestarts, ReplayBuffer
from ebmlab.training.shuffled import Shuffled

__all__ = [
    "Negatives",
    "MostOffending",
    "Sampled",
    "Uniform",
    "Gaussian",
    "Shuffled",
    "NEGATIVES",
    "check_negatives_output",
    "default_negatives",
]


class Negatives(Protocol):
    """The common call signature of every negative source."""

    def __call__(
        self,
        energy: Energy,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...


def _repeat(x: Tensor | None, k: int) -> Tensor | None:
    return None if x is None else x.repeat_interleave(k, dim=0)  # (B, ...) -> (B*k, ...)


class Sampled:
    r"""Negatives drawn by MCMC on :math:`p \propto e^{-\beta F}`: CD, noise-started or persistent.

    Chains start from the data (``init="data"``: contrastive divergence CD-k), from noise
    (``"noise"``: uniform in ``domain``, or :math:`N(0, s^2)` without one) or from a replay
    buffer of past chain ends (``"buffer"``: persistent CD, with a fraction ``reinit`` restarted
    from noise), then run ``num_steps`` steps of the Langevin proposal
    :math:`y' = y - h\nabla_y F + \sqrt{2h/\beta}\,\xi`, written inline.

    By default (``step_size="auto"``) each proposal is accepted or rejected by
    Metropolis-Hastings (MALA, :func:`ebmlab.training.adjusted.metropolis_langevin`: no
    discretisation bias, so chains never overshoot a narrow mode) and the step adapts: it
    starts at :math:`h_0 = 0.005\,s^2` (:math:`s` the mean per-coordinate sd of the first
    positives) and after every step is multiplied by :math:`e^{0.2\,(a - 0.574)}`, :math:`a`
    the mean acceptance probability, within :math:`[10^{-6} h_0, 4 s^2]`; it is state
    (:meth:`state_dict`; :meth:`reset` restarts it). A number ``step_size`` is a fixed,
    unadjusted step (as before) unless ``metropolis=True``. With a ``domain``, unadjusted
    chains are projected into it and adjusted proposals that leave it are rejected. Any
    ``eb.samplers`` kernel can be passed as ``sampler`` instead.

    Args:
        num_steps: MCMC steps k per call.
        step_size: ``"auto"`` (the adapted Metropolis-adjusted step above) or a fixed
            Langevin step h (ignored with ``sampler``); no fixed unadjusted step suits every
            data set (docs/training.md).
        beta: inverse temperature β of the built-in Langevin step.
        init: ``"data"``, ``"noise"`` or ``"buffer"``.
        num: negatives per positive (``None``: one, shaped like ``y``).
        domain: a :class:`ebmlab.Box` for noise starts and projection.
        noise_scale: standard deviation s of Gaussian noise starts without a domain.
        buffer_size: capacity of the replay buffer (``init="buffer"``), an
            :class:`ebmlab.training.ReplayBuffer` filled with noise on first use.
        reinit: fraction of buffer chains restarted from noise each call.
        buffer: an existing :class:`ebmlab.training.ReplayBuffer` to use instead.
        sampler: an ``eb.samplers`` kernel with ``init(y0, energy, x)`` and
            ``step(state, energy, x, *, generator)``.
        metropolis: accept or reject each built-in step by Metropolis-Hastings (MALA);
            ``None``: ``True`` with ``step_size="auto"``, ``False`` with a number.
        compile: ``True`` or ``"cuda-graph"``: the built-in unadjusted Langevin steps (a fixed
            ``step_size``, ``metropolis=False``) of one call run as one ``torch.compile``\ d
            block (the noise drawn eagerly first, in the same order, so the stream is the
            eager one); compiled once per batch shape, with one ``UserWarning`` and the eager
            loop when compilation fails; ``eb.fit(..., compile=True)`` turns it on. Not part
            of the run's fingerprint.
        jumps: after the steps, this many Metropolis moves to points uniform in ``domain``
            (or the first positives' box padded by 5 %, kept as state;
            :func:`ebmlab.training.adjusted.uniform_jumps`): they cross between separated
            modes, which local steps never do, so the negatives carry the model's mixture
            weights. ``"auto"``: 4 with ``step_size="auto"`` on events of at most 4
            coordinates, else 0 (:meth:`num_jumps`; useless in high dimension).

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(1))
        >>> neg = eb.training.negatives.Sampled(num_steps=5, step_size=0.1, init="noise")
        >>> neg(q, torch.zeros(4, 1), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1])
    """

    INITS = ("data", "noise", "buffer")

    def __init__(
        self,
        num_steps: int = 10,
        step_size: float | str = "auto",
        *,
        beta: float = 1.0,
        init: str = "data",
        num: int | None = None,
        domain: Box | None = None,
        noise_scale: float = 1.0,
        buffer_size: int = 10000,
        reinit: float = 0.05,
        sampler: Any = None,
        buffer: Any = None,
        metropolis: bool | None = None,
        compile: bool | str = False,
        jumps: int | str = "auto",
    ) -> None:
        self.num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
        is_auto = isinstance(step_size, str)
        if is_auto and step_size != "auto":
            raise ValueError(f"step_size must be a positive number or 'auto'; got {step_size!r}")
        self.step_size: float | str = step_size if is_auto else check_positive(
            step_size, "step_size")
        if metropolis is None:
            metropolis = is_auto and sampler is None  # a kernel makes its own steps
        if not isinstance(metropolis, bool):
            raise TypeError(f"metropolis must be a bool or None; got {type(metropolis).__name__}")
        if is_auto and not metropolis and sampler is None:
            raise ValueError(
                "step_size='auto' adapts the step to the Metropolis acceptance rate; give a "
                "number step_size for unadjusted steps (metropolis=False)"
            )
        self.metropolis = metropolis
        self._step: Tensor | None = None  # the adapted step (step_size="auto"), state
        self._step_range: tuple[float, float] = (0.0, math.inf)
        self.beta = check_positive(beta, "beta")
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}; got {init!r}")
        self.init = init
        self.num = None if num is None else check_positive_int(num, "num")
        self.domain = check_box(domain)
        self.noise_scale = check_positive(noise_scale, "noise_scale")
        self.reinit = check_fraction(reinit, "reinit")
        if sampler is not None and not (hasattr(sampler, "init") and hasattr(sampler, "step")):
            raise TypeError(
                f"sampler must be an eb.samplers kernel with init() and step(); "
                f"got {type(sampler).__name__}"
            )
        self.sampler = sampler
        self.buffer_size = check_positive_int(buffer_size, "buffer_size")
        self.buffer = buffer
        self._noise_std = 0.0 if is_auto else math.sqrt(2 * self.step_size / self.beta)
        self._compile_mode = check_compile(compile)
        if self._compile_mode is not None and sampler is not None:
            raise ValueError("compile applies to the built-in Langevin steps; drop sampler=")
        if self._compile_mode is not None and metropolis:
            raise ValueError(
                "compile applies to the built-in unadjusted Langevin steps; give a number "
                "step_size (metropolis=False)"
            )
        self._block: Any = None
        if isinstance(jumps, str) and jumps != "auto":
            raise ValueError(f"jumps must be a non-negative int or 'auto'; got {jumps!r}")
        self.jumps = jumps if isinstance(jumps, str) else check_positive_int(jumps, "jumps",
                                                                             minimum=0)
        self._jump_box: Box | None = None  # domain=None: the first positives' box, state

    @property
    def compile_mode(self) -> str | None:
        """The compile mode of the built-in steps (``None``: eager)."""
        return self._compile_mode

    def use_compile(self, mode: str) -> bool:
        """Compile the built-in steps in ``mode`` (from ``eb.fit``); ``False`` with a kernel.

        ``False`` too for Metropolis-adjusted steps (``step_size="auto"``): they run eager.
        """
        if self.sampler is not None or self.metropolis:
            return False
        if mode != self._compile_mode:
            self._compile_mode, self._block = mode, None
        return True

    def __repr__(self) -> str:
        return (
            f"Sampled(num_steps={self.num_steps}, step_size={self.step_size}, "
            f"init={self.init!r}, metropolis={self.metropolis}, sampler={self.sampler!r}"
            f", jumps={self.jumps!r})"
        )

    def noise(self, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Return ``n`` noise starts shaped like the rows of ``like``."""
        if self.domain is not None:
            return self.domain.sample(n, generator=generator, dtype=like.dtype, device=like.device)
        return self.noise_scale * torch.randn((n, *like.shape[1:]), generator=generator,
                                              dtype=like.dtype, device=like.device)

    def __call__(
        self,
        energy: Energy,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        k, b, y = self.num or 1, y.shape[0], y.detach()
        n = b * k
        if self.init == "data":
            y0 = y.repeat_interleave(k, dim=0) if k > 1 else y.clone()
        elif self.init == "noise":
            y0 = self.noise(n, y, generator)
        else:
            buffer = self._buffer(tuple(y.shape[1:]), y.dtype, y.device)
            y0, index = buffer.sample(n, generator=generator)
        if self._step is None and self.step_size == "auto" and self.sampler is None:
            self._step, self._step_range = start_step(y)
        xk = _repeat(x, k) if k > 1 else x
        out = self._run(energy, y0, xk, generator)
        if num_jumps := self.num_jumps(y):
            out, _ = uniform_jumps(energy, out, xk, self._jump_domain(y), num_jumps,
                                   beta=self.beta, generator=generator)
        if self.init == "buffer":
            buffer.update(index, out)
        return out if self.num is None else out.reshape(b, k, *y.shape[1:])

    def _buffer(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Any:
        if self.buffer is None:
            like = torch.empty((1, *shape), dtype=dtype, device=device)
            init = self.domain if self.domain is not None else (
                lambda num, generator: self.noise(num, like, generator)
            )
            self.buffer = ReplayBuffer(
                self.buffer_size, init, reinit_fraction=self.reinit, y_shape=shape,
                dtype=dtype, device=device,
            )
        return self.buffer

    def num_jumps(self, y: Tensor) -> int:
        """The jumps per call for positives like ``y``: ``jumps``, or for ``"auto"`` 4 after
        ``num_steps`` > 0 steps of ``step_size="auto"`` on events of at most 4 coordinates."""
        if self.jumps != "auto":
            return int(self.jumps)
        is_default_chain = self.step_size == "auto" and self.sampler is None and self.num_steps
        small = math.prod(y.shape[1:]) <= AUTO_JUMP_MAX_DIM
        return AUTO_JUMPS if is_default_chain and small else 0

    def _jump_domain(self, y: Tensor) -> Box:
        """Where jumps propose: ``domain``, else the first positives' box padded by 5 %."""
        if self.domain is not None:
            return self.domain
        if self._jump_box is None:
            self._jump_box = bounding_box(y, pad=0.05)
        return self._jump_box

    def _run(
        self, energy: Energy, y: Tensor, x: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        if self.sampler is not None:
            state = self.sampler.init(y, energy, x)
            for _ in range(self.num_steps):
                state, _info = self.sampler.step(state, energy, x, generator=generator)
            return state.position.detach()
        if self.metropolis:
            is_auto = self._step is not None and self.step_size == "auto"
            y, step = metropolis_langevin(
                energy, y, x, self._step if is_auto else self.step_size, self.num_steps,
                beta=self.beta, domain=self.domain, generator=generator,
                step_range=self._step_range if is_auto else None,
            )
            if is_auto:
                self._step = step
            return y
        h, std = self.step_size, self._noise_std
        if self._compile_mode is not None and self.num_steps:
            if self._block is None:
                self._block = compiled_langevin(self._compile_mode)
            noise = draw_noise(self.num_steps, y, generator)
            project = self.domain.project if self.domain is not None else None
            with torch.no_grad():
                return self._block(traceable_energy_and_grad(energy), project, y, x, noise, h,
                                   std)
        for _ in range(self.num_steps):
            _, g = energy.energy_and_grad(y, x)
            xi = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            y = y - h * g + std * xi
            if self.domain is not None:
                y = self.domain.project(y)
        return y

    @property
    def current_step_size(self) -> float:
        """The step the next call uses (``step_size="auto"``: adapted; NaN before use)."""
        if self.step_size != "auto":
            return float(self.step_size)
        return math.nan if self._step is None else float(self._step)

    def reset(self) -> None:
        """Forget the persistent chains and the adapted step.

        The replay buffer is refilled from noise and the adapted step starts again from
        :math:`h_0` on next use. :func:`ebmlab.fit` calls it when it rolls a diverged run back
        (the chains may have run off to where the diverged energy sent them).
        """
        if self.buffer is not None:
            self.buffer.is_filled.fill_(False)
        self._step = None

    def state_dict(self) -> dict[str, Tensor]:
        """Return the replay buffer's tensors and the adapted step (empty before first use)."""
        state = {} if self.buffer is None else self.buffer.state_dict()
        if self._step is not None:
            low, high = self._step_range
            state["step_size"] = torch.stack([self._step.reshape(()),
                                              self._step.new_tensor(low),
                                              self._step.new_tensor(high)])
        if self._jump_box is not None:
            state["jump_box"] = torch.stack([self._jump_box.low, self._jump_box.high])
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the replay buffer and adapted step from :meth:`state_dict`."""
        state = dict(state)
        step = state.pop("step_size", None)
        box = state.pop("jump_box", None)
        if box is not None:
            self._jump_box = Box(box[0].clone(), box[1].clone())
        if step is not None:
            self._step = step[0].clone()
            self._step_range = (float(step[1]), float(step[2]))
        if not state:
            return
        data = state["data"]
        self._buffer(tuple(data.shape[1:]), data.dtype, data.device).load_state_dict(state)


NEGATIVES: dict[str, type] = {
    "most_offending": MostOffending,
    "sampled": Sampled,
    "uniform": Uniform,
    "gaussian": Gaussian,
    "shuffled": Shuffled,
}


def check_negatives_output(out: object, y: Tensor) -> Tensor:
    """Check a negative source returned (B, *y_shape) or (B, K, *y_shape) (used once by fit)."""
    out = check_tensor(out, "negatives output")
    shape = tuple(y.shape)
    if tuple(out.shape) == shape or (
        out.ndim == y.ndim + 1 and out.shape[0] == shape[0] and tuple(out.shape[2:]) == shape[1:]
    ):
        return out
    raise ValueError(
        f"negatives returned shape {tuple(out.shape)}; expected {shape} or "
        f"(B, K, *y_shape) = ({shape[0]}, K, {', '.join(map(str, shape[1:]))})"
    )


# The default of eb.fit(negatives=None) for a loss that needs negatives (default_negatives).
DEFAULT_NUM_STEPS = 10
DEFAULT_STEP_FRACTION = 0.005  # h = 0.005 * s^2, s = the data's mean per-coordinate std
DEFAULT_REINIT = 0.05
DEFAULT_BUFFER_SIZE = 10000
DEFAULT_BOX_PAD = 0.5  # the chains' box: the data's, widened by half its width on each side


def default_negatives(y: Tensor) -> Sampled:
    r"""The negatives :func:`ebmlab.fit` uses when a contrastive loss is given ``negatives=None``.

    Persistent Langevin chains at :math:`\beta = 1` (the temperature every likelihood loss of
    ``eb.losses`` assumes) from a replay buffer of 10,000 chains, filled with training points:
    each step draws chains from the buffer, restarts 5 % of them at random training points
    (:class:`ebmlab.training.replay.DataRestarts`), runs 10 Metropolis-adjusted Langevin (MALA)
    steps and, on events of at most 4 coordinates, 4 uniform jumps (``Sampled(jumps=4)``: the
    moves between separated modes that let the loss learn their weights) inside the data's
    bounding box widened by half its width on each side (proposals leaving it rejected;
    the margin lets chains reach, and push up, low energy just outside the data), and writes
    them back: the short-run persistent recipe of Du & Mordatch 2019 / Nijkamp et al. 2019,
    adjusted so that a sharp mode cannot throw the chains out, restarted where the data pushes
    the energy down (docs/training.md). The step is :math:`h = 0.005\,s^2`, :math:`s` the
    mean per-coordinate sd of ``y`` (0.01 for 8 Gaussians): independent of the data's units.

    Args:
        y: the training answers (N, *y_shape).

    Returns:
        A :class:`Sampled` source with ``init="buffer"``.

    Example:
        >>> import torch, ebmlab as eb
        >>> y = eb.data.eight_gaussians(1000, generator=torch.Generator().manual_seed(0))
        >>> neg = eb.training.negatives.default_negatives(y)
        >>> neg.init, neg.num_steps, round(neg.step_size, 3), neg.jumps
        ('buffer', 10, 0.01, 4)
    """
    y = check_tensor(y, "y").detach()
    flat = y.reshape(y.shape[0], -1)
    box = bounding_box(y, pad=DEFAULT_BOX_PAD)
    jumps = AUTO_JUMPS if math.prod(y.shape[1:]) <= AUTO_JUMP_MAX_DIM else 0
    scale = float(flat.double().std(0, unbiased=False).mean()) if y.shape[0] > 1 else 1.0
    scale = scale if math.isfinite(scale) and scale > 0 else 1.0
    buffer = ReplayBuffer(DEFAULT_BUFFER_SIZE, DataRestarts(y), reinit_fraction=DEFAULT_REINIT,
                          y_shape=tuple(y.shape[1:]), dtype=y.dtype, device=y.device)
    return Sampled(num_steps=DEFAULT_NUM_STEPS, step_size=DEFAULT_STEP_FRACTION * scale**2,
                   init="buffer", domain=box, reinit=DEFAULT_REINIT,
                   buffer_size=DEFAULT_BUFFER_SIZE, buffer=buffer, metropolis=True, jumps=jumps)
