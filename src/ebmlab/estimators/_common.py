r"""Parts of the implicit estimators: the scaled energy, counter-examples, the ML grid, checks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ebmlab.domain import Box
from ebmlab.energies.neural import MLPEnergy
from ebmlab.energy import Energy
from ebmlab.inference import Inference
from ebmlab.training.negatives import Sampled, Uniform

__all__ = ["LOSSES", "INFERENCE", "SCHEDULES", "check_params"]

LOSSES = ("info_nce", "nce", "ml")
SCHEDULES = ("auto", "cosine", "constant")
INFERENCE = {"gradient": "adam", "dfo": "dfo", "langevin": "langevin"}

# Cells per axis of the quadrature that normalises score() and sample() for dim(y) <= 2, and
# importance draws per input beyond; chosen so a cell is narrower than the sharpest density
# of the benchmarks (ds2: sigma = 0.4 % of the y range at x = -3).
_GRID_CELLS = {1: 2048, 2: 128}
_IMPORTANCE_SAMPLES = 4096
# Standard deviations of the Gaussian draws at the positive (loss="ml"), in scaled units
# (the box is [-1, 1]^k): from below the sharpest benchmark density to a tenth of the box.
_LOCAL_SCALES = (0.003, 0.01, 0.03, 0.1)
_POLISH_LR = 0.005  # Adam's step of the polishing pass, in scaled units (default pass: 0.05)


def _unit_box(k: int) -> Box:
    return Box([-1.0] * k, [1.0] * k)


class _TemperedMLP(Energy):
    r"""An MLP energy with an input-dependent inverse temperature: :math:`e^{t(x)}\,F([y, x])`.

    :math:`F` is an :class:`MLPEnergy` and :math:`t` a one-hidden-layer MLP of ``x`` whose last
    layer starts at zero (so the initial energy is :math:`F`). The product can represent any
    energy :math:`F` can, but the sharpness of :math:`p(y|x)` becomes one output of the
    network instead of a slope every weight must grow to: a density whose width changes
    20-fold over ``x`` (Gustafsson's ds2) needs curvatures 400 times apart. On ds2 (1,500
    steps, ML) the test NLL gap to the optimum falls from 0.22 to 0.01 nats.
    """

    def __init__(self, y_dim: int, x_dim: int, hidden: Sequence[int], activation: str,
                 temperature_width: int = 32) -> None:
        super().__init__()
        self.body = MLPEnergy(y_dim, x_dim, hidden=hidden, activation=activation)
        self.temperature = nn.Sequential(nn.Linear(x_dim, temperature_width), nn.SiLU(),
                                         nn.Linear(temperature_width, 1))
        nn.init.zeros_(self.temperature[2].weight)
        nn.init.zeros_(self.temperature[2].bias)
        self.y_shape = (y_dim,)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("the energy of an ImplicitRegressor is conditional; got x=None")
        return self.body(y, x) * self.temperature(x).squeeze(-1).exp()

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Return :math:`e^{t(x)} F` and :math:`e^{t(x)} \nabla_y F`, detached.

        The MLP's written-out gradient (:meth:`MLPEnergy.energy_and_grad`) scaled by the
        temperature, which does not depend on ``y``: no autograd graph per inference step
        (autograd's backward was 30 % of ``predict`` on particle states). The gradient equals
        autograd's up to float rounding (the product is taken after the MLP's backward).
        """
        if x is None:
            raise ValueError("the energy of an ImplicitRegressor is conditional; got x=None")
        e, g = self.body.energy_and_grad(y, x)
        with torch.no_grad():
            scale = self.temperature(x).squeeze(-1).exp()
        return e * scale, g * scale.reshape(-1, *([1] * (g.ndim - 1)))


class _Standardized(Energy):
    r"""An energy on the data's units: :math:`E(x, y) = E_{net}((x - m)/s, (y - c)/h)`.

    The network works on standardised inputs and on targets mapped from ``y_bounds_`` onto
    :math:`[-1, 1]^k`, so step sizes, penalties and counter-example ranges are unit-free.
    """

    def __init__(self, net: Energy, x_mean: Tensor, x_scale: Tensor, y_center: Tensor,
                 y_half: Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("x_mean", x_mean)
        self.register_buffer("x_scale", x_scale)
        self.register_buffer("y_center", y_center)
        self.register_buffer("y_half", y_half)
        self.y_shape = (int(y_center.numel()),)

    def scale_x(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_scale

    def scale_y(self, y: Tensor) -> Tensor:
        return (y - self.y_center) / self.y_half

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("the energy of an ImplicitRegressor is conditional; got x=None")
        return self.net.forward(self.scale_y(y), self.scale_x(x))


class _CounterExamples:
    """Uniform counter-examples in the scaled box plus Langevin-refined ("inferred") ones.

    The inferred ones are IBC's MCMC counter-examples: uniform starts moved by a few
    Langevin steps on the current energy, so they sit where the model is confidently wrong.
    The last inferred batch is kept for the gradient penalty.
    """

    def __init__(self, box: Box, num_uniform: int, num_inferred: int, num_steps: int,
                 step_size: float) -> None:
        self.uniform = Uniform(box, num=num_uniform) if num_uniform else None
        self.inferred = (
            Sampled(num_steps=num_steps, step_size=step_size, init="noise", num=num_inferred,
                    domain=box) if num_inferred else None
        )
        self.last_inferred: Tensor | None = None

    def __call__(self, energy: Energy, y: Tensor, x: Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> Tensor:
        parts = []
        if self.uniform is not None:
            parts.append(self.uniform(energy, y, x, generator=generator))
        if self.inferred is not None:
            self.last_inferred = self.inferred(energy, y, x, generator=generator)
            parts.append(self.last_inferred)
        return torch.cat(parts, dim=1)  # (B, K, k)


class _StratifiedGrid:
    """One jittered point per cell of a grid on the scaled box (unbiased quadrature of Z)."""

    def __init__(self, box: Box, per_axis: int) -> None:
        self.box = box
        self.per_axis = per_axis
        grid = box.grid(per_axis, dtype=torch.float32)
        self.corners = grid.points - (box.high - box.low).float() / (2 * per_axis)
        self.cell = (box.high - box.low).float() / per_axis
        self.log_cell_volume = float(self.cell.log().sum())

    def __call__(self, energy: Energy, y: Tensor, x: Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> Tensor:
        b = y.shape[0]
        corners = self.corners.to(dtype=y.dtype, device=y.device)
        u = torch.rand((b, *corners.shape), generator=generator, dtype=y.dtype, device=y.device)
        return corners + u * self.cell.to(dtype=y.dtype, device=y.device)  # (B, K, k)


class _ImportanceGrid:
    r"""Draws for :math:`\log Z(x)`: a jittered grid on the box plus Gaussians at the positive.

    Multiple importance sampling (the balance heuristic) over two kinds of draws: the ``G``
    grid points, uniform on the box of volume ``V``, and ``per_scale`` draws from each
    :math:`N(y_i, s_c^2 I)` around the training target (the proposals of Gustafsson et al.'s
    ML-IS). A draw :math:`y` gets the weight
    :math:`w = 1 / (G/V + n_s \sum_c N(y; y_i, s_c^2 I))`, so
    :math:`\hat Z = \sum_m w_m e^{-E(y_m)}` is unbiased on the box (draws outside it weigh
    0). The grid covers every mode; the local draws resolve a peak at :math:`y_i` however much
    narrower than a grid cell it is, where a grid alone underestimates Z and the model learns
    a density too sharp. ``last_log_weights`` (B, K) holds :math:`\log w` of the last draws.
    """

    def __init__(self, box: Box, per_axis: int, per_scale: int,
                 scales: tuple[float, ...]) -> None:
        self.grid = _StratifiedGrid(box, per_axis)
        self.per_scale = per_scale
        self.scales = scales
        num_grid = per_axis ** box.low.numel()
        self.log_grid_density = math.log(num_grid) - float((box.high - box.low).log().sum())
        self.last_log_weights: Tensor | None = None

    def __call__(self, energy: Energy, y: Tensor, x: Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> Tensor:
        grid = self.grid(energy, y, x, generator=generator)  # (B, G, k)
        if not self.per_scale:
            self.last_log_weights = torch.full(grid.shape[:2], -self.log_grid_density,
                                               dtype=y.dtype, device=y.device)
            return grid
        b, k = y.shape
        scales = torch.tensor(self.scales, dtype=y.dtype, device=y.device)  # (C,)
        s = scales.repeat_interleave(self.per_scale)  # (L,)
        noise = torch.randn((b, s.numel(), k), generator=generator, dtype=y.dtype,
                            device=y.device)
        draws = torch.cat([grid, y[:, None] + noise * s[:, None]], dim=1)  # (B, K, k)
        d2 = (draws - y[:, None]).square().sum(-1, keepdim=True)  # (B, K, 1)
        log_normal = (-0.5 * d2 / scales.square() - k * scales.log()
                      - 0.5 * k * math.log(2 * math.pi))  # (B, K, C)
        log_mix = torch.logsumexp(torch.cat([
            torch.full_like(d2, self.log_grid_density),
            math.log(self.per_scale) + log_normal], dim=-1), dim=-1)  # (B, K)
        low = self.grid.box.low.to(dtype=y.dtype, device=y.device)
        high = self.grid.box.high.to(dtype=y.dtype, device=y.device)
        inside = ((draws >= low) & (draws <= high)).all(-1)
        self.last_log_weights = torch.where(inside, -log_mix, -math.inf)
        return draws


def _first_modes(result: Inference, m: int | None) -> Inference:
    """Keep the ``m`` best modes: every per-mode field (B, K, ...) is cut to (B, m, ...)."""
    b, k = result.energy.shape
    if m is None or m >= k:
        return result
    m = int(m)
    cut = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name != "trajectory" and isinstance(value, Tensor) and value.shape[:2] == (b, k):
            cut[f.name] = value[:, :m]
    return dataclasses.replace(result, count=result.count.clamp_max(m), **cut)


def _ibc_gradient_penalty(energy: nn.Module, y_neg: Tensor, x: Tensor, margin: float) -> Tensor:
    r"""Return :math:`\mathrm{mean}\,\max(0, \lVert\nabla_y E(x, \tilde y)\rVert_\infty - M)^2`."""
    b, k = y_neg.shape[:2]
    y = y_neg.reshape(b * k, -1).detach().requires_grad_(True)  # (B, K, k) -> (B*K, k)
    e = energy(y, x.repeat_interleave(k, dim=0))
    (g,) = torch.autograd.grad(e.sum(), y, create_graph=True)
    return (g.abs().amax(-1) - margin).clamp_min(0).square().mean()


def check_params(est: Any, n_outputs: int) -> None:
    """Raise ValueError naming the first bad hyper-parameter of an ImplicitRegressor."""
    if est.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {est.loss!r}")
    if est.input_temperature not in ("auto", True, False):
        raise ValueError(f"input_temperature must be 'auto', True or False; got "
                         f"{est.input_temperature!r}")
    if est.learning_rate_schedule not in SCHEDULES:
        raise ValueError(f"learning_rate_schedule must be one of {SCHEDULES}; got "
                         f"{est.learning_rate_schedule!r}")
    if est.inference not in INFERENCE:
        raise ValueError(f"inference must be one of {tuple(INFERENCE)}; got "
                         f"{est.inference!r}")
    for name in ("n_counter_examples", "langevin_steps", "n_starts", "inference_steps",
                 "max_iter", "batch_size"):
        value = getattr(est, name)
        minimum = 0 if name == "langevin_steps" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
            value < minimum
        ):
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    for name in ("learning_rate", "langevin_step_size", "gradient_margin"):
        value = getattr(est, name)
        if name == "learning_rate" and isinstance(value, str) and value == "auto":
            continue
        if not isinstance(value, (int, float)) or not 0 < value < math.inf:
            extra = " or 'auto'" if name == "learning_rate" else ""
            raise ValueError(f"{name} must be a finite number > 0{extra}; got {value!r}")
    for name in ("gradient_penalty", "y_margin"):
        value = getattr(est, name)
        if not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    if not isinstance(est.inferred_fraction, (int, float)) or not (
        0 <= est.inferred_fraction <= 1
    ):
        raise ValueError(f"inferred_fraction must be in [0, 1]; got "
                         f"{est.inferred_fraction!r}")
    if est.loss == "ml" and n_outputs > 2:
        raise ValueError(
            f"loss='ml' normalises on a grid and needs at most 2 target columns; got "
            f"{n_outputs}. Use loss='info_nce' or 'nce'"
        )
    solver = INFERENCE[est.inference]
    if solver != "adam":
        from ebmlab.inference import SOLVERS

        if solver not in SOLVERS:
            raise ValueError(
                f"inference={est.inference!r} needs the solver {solver!r}, which this "
                f"version of ebmlab lacks (solvers: {sorted(SOLVERS)})"
            )

