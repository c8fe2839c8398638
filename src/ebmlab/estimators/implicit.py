r"""Scikit-learn estimators: ``ImplicitRegressor``, :math:`\hat y = \arg\min_y E(x, y)`."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# scikit-learn is an optional dependency (pip install "ebmlab[sklearn]"): ``import ebmlab``
# loads this module only when ``eb.ImplicitRegressor`` is first used.
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor, nn

from ebmlab.domain import Box
from ebmlab.energies.neural import MLPEnergy
from ebmlab.estimators._common import (
    _GRID_CELLS,
    _IMPORTANCE_SAMPLES,
    _LOCAL_SCALES,
    _POLISH_LR,
    INFERENCE,
    LOSSES,
    _CounterExamples,
    _first_modes,
    _ibc_gradient_penalty,
    _ImportanceGrid,
    _Standardized,
    _TemperedMLP,
    _unit_box,
    check_params,
)
from ebmlab.gibbs import Gibbs
from ebmlab.inference import Adam, Inference, infer
from ebmlab.losses import info_nce, nll
from ebmlab.partition.grid import Grid
from ebmlab.partition.importance import Importance
from ebmlab.training.fit import fit
from ebmlab.training.negatives import Uniform

__all__ = ["ImplicitRegressor", "LOSSES", "INFERENCE"]


class ImplicitRegressor(RegressorMixin, BaseEstimator):
    r"""An implicit regressor: learn an energy :math:`E(x, y)`, predict :math:`\arg\min_y E(x, y)`.

    A scikit-learn estimator for targets with several correct values per input
    (multi-valued, discontinuous or skewed relations), where a least-squares regressor
    returns their average. ``fit`` trains an :class:`ebmlab.energies.MLPEnergy`
    :math:`F([y, x])` (times :math:`e^{t(x)}`, an inverse temperature from a small MLP of
    the input, with ``loss="ml"``: the width of :math:`p(y|x)` can then change with
    :math:`x`) with :func:`ebmlab.fit`; the model is the
    Gibbs density :math:`p(y|x) = e^{-E(x, y)} / Z(x)` on the box ``y_bounds_`` (the
    training targets' range widened by ``y_margin`` on each side). ``predict`` returns the
    lowest-energy :math:`y` found by :func:`ebmlab.infer`, ``predict_modes`` every minimum,
    ``sample`` draws from :math:`p(y|x)`, and ``score`` is the mean log-likelihood
    :math:`\frac1n \sum_i \log p(y_i|x_i)` (nats; normalised by grid quadrature on
    ``y_bounds_`` for dim(y) ≤ 2, by importance sampling beyond). Inputs are standardised
    and targets mapped onto :math:`[-1, 1]^k` inside the model; ``energy_`` works in the
    data's units.

    Losses:

    - ``"info_nce"`` (Florence et al. 2021): the positive is ranked against
      ``n_counter_examples`` counter-examples, a fraction ``inferred_fraction`` of them
      Langevin-refined from uniform starts (IBC's MCMC counter-examples) and the rest
      uniform in the target box, plus IBC's gradient penalty
      :math:`\max(0, \lVert\nabla_y E\rVert_\infty - M)^2` at the inferred ones
      (weight ``gradient_penalty``, margin ``gradient_margin`` in scaled units).
    - ``"nce"``: binary noise-contrastive estimation with uniform noise
      (:func:`ebmlab.losses.nce`).
    - ``"ml"``: maximum likelihood, :math:`\log Z(x)` by multiple importance sampling
      from ``n_counter_examples`` draws per pair (dim(y) ≤ 2 only): half on a jittered grid
      of the box, half Gaussian around the training target (standard deviations 0.003 to
      0.1 of the scaled box, Gustafsson et al.'s ML-IS proposals). A grid alone misses a
      peak narrower than its cells, underestimates Z there and learns too sharp a density.
      Energies far from the data grow freely (an energy gap past eb.fit's 1e4 guard after
      ~3,000 particle steps): only a non-finite step counts as a divergence, and is skipped.

    Args:
        hidden_layer_sizes: widths of the energy network's hidden layers.
        activation: its activation (``"silu"``, ``"softplus"``, ``"tanh"``, ``"gelu"``,
            ``"elu"``, ``"relu"``).
        input_temperature: multiply the MLP by :math:`e^{t(x)}`, an inverse temperature from
            a small MLP of the input (``True``), or not (``False``); ``"auto"``: only with
            ``loss="ml"``, where it was measured (ds2: NLL gap 0.22 -> 0.01 nats).
        loss: ``"info_nce"``, ``"nce"`` or ``"ml"``.
        n_counter_examples: counter-examples (or importance draws, for ``"ml"``) per pair.
        inferred_fraction: the share of Langevin-refined counter-examples (``"info_nce"``).
        langevin_steps, langevin_step_size: their chains, in scaled units.
        gradient_penalty: weight of IBC's gradient penalty (0 to disable).
        gradient_margin: its margin M, in energy per unit of the scaled target. IBC's
            M = 1 suits energies that are only minimised; it flattens a density (on
            :math:`y = \pm\sqrt{x}` after 400 steps the mean log-likelihood falls from 0.02
            to -1.42 nats), so the default 100 only caps the runaway slopes that break the
            Langevin counter-examples.
        inference: ``"gradient"`` (multi-start Adam, :func:`ebmlab.infer`), ``"dfo"`` or
            ``"langevin"`` (the solvers of the same names, where ``eb.inference.SOLVERS``
            has them).
        n_starts: starts per input of the inference.
        inference_steps: solver steps per start.
        max_iter: training steps.
        batch_size: training pairs per step.
        learning_rate: Adam's (initial) rate; ``"auto"``: 0.03 with ``loss="ml"`` (1,500
            steps, cosine: ds1 gap 0.072/0.048, ds2 0.007/0.013 at 0.01/0.03), 3e-3 else.
        learning_rate_schedule: ``"constant"``, ``"cosine"`` (decay to 0 over ``max_iter``
            steps) or ``"auto"``: cosine with ``loss="ml"`` (ds1 at 0.01: gap 0.10 -> 0.07),
            constant otherwise (cosine lost a branch of :math:`y = \pm\sqrt{x}` at 400
            steps and lowered particle success 0.32 -> 0.04 with InfoNCE).
        y_margin: widening of the target box on each side, as a fraction of the range.
        random_state: seed of the network's initialisation, the batches, the counter-examples
            and the inference starts (an int, a ``RandomState`` or ``None``).
        device: torch device of the network.
        verbose: show the training progress bar.

    Attributes:
        energy_: the fitted :class:`ebmlab.Energy`, ``energy_(y, x)`` in the data's units.
        n_features_in_: number of input features.
        feature_names_in_: input feature names, when ``X`` had string column names.
        n_outputs_: number of target columns k.
        y_bounds_: ``(low, high)``, two arrays of shape (k,): the box of the density.
        history_: the :class:`ebmlab.History` of the training run.
        n_iter_: training steps run (``max_iter``).

    Skipped scikit-learn checks: none. ``__sklearn_tags__`` sets ``poor_score`` because
    ``score`` is a log-likelihood, not the :math:`R^2` that ``check_regressors_train``
    compares with 0.5.

    References:
        Florence et al., "Implicit Behavioral Cloning", CoRL 2021, arXiv:2109.00137;
        Gustafsson, Danelljan, Bhat, Schön, "How to Train Your Energy-Based Model for
        Regression", BMVC 2020, arXiv:2005.01698.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.two_branch(500, generator=torch.Generator().manual_seed(0))
        >>> model = eb.ImplicitRegressor(max_iter=300, random_state=0)
        >>> model = model.fit(x.numpy(), y[:, 0].numpy())
        >>> modes = model.predict_modes([[4.0]], max_modes=2)
        >>> found = sorted(modes.y[0, :, 0].tolist())  # both branches of y = ±√4
        >>> abs(found[0] + 2) < 0.2 and abs(found[1] - 2) < 0.2
        True
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (64, 64),
        activation: str = "silu",
        input_temperature: bool | str = "auto",
        loss: str = "info_nce",
        n_counter_examples: int = 64,
        inferred_fraction: float = 0.25,
        langevin_steps: int = 10,
        langevin_step_size: float = 1e-3,
        gradient_penalty: float = 1.0,
        gradient_margin: float = 100.0,
        inference: str = "gradient",
        n_starts: int = 16,
        inference_steps: int = 100,
        max_iter: int = 2000,
        batch_size: int = 128,
        learning_rate: float | str = "auto",
        learning_rate_schedule: str = "auto",
        y_margin: float = 0.1,
        random_state: Any = None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.input_temperature = input_temperature
        self.loss = loss
        self.n_counter_examples = n_counter_examples
        self.inferred_fraction = inferred_fraction
        self.langevin_steps = langevin_steps
        self.langevin_step_size = langevin_step_size
        self.gradient_penalty = gradient_penalty
        self.gradient_margin = gradient_margin
        self.inference = inference
        self.n_starts = n_starts
        self.inference_steps = inference_steps
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.y_margin = y_margin
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        # score() is a mean log-likelihood in nats, not R^2: the 0.5 threshold of
        # check_regressors_train does not apply to it.
        tags.regressor_tags.poor_score = True
        return tags

    # ----------------------------------------------------------------------------- checks

    def _check_params(self, n_outputs: int) -> None:
        check_params(self, n_outputs)

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.tensor(np.asarray(array, dtype=np.float32), device=self.device)

    # -------------------------------------------------------------------------------- fit

    def fit(self, X: Any, y: Any) -> ImplicitRegressor:
        """Train the energy on the pairs ``(X, y)``; return ``self``.

        Args:
            X: inputs, array-like (n_samples, n_features).
            y: targets, (n_samples,) or (n_samples, n_outputs).

        Raises:
            ValueError: bad shapes, NaN or infinite values, or bad hyper-parameters.
            ebmlab.training.DivergenceError: training became non-finite.
        """
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32])
        self._is_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        k = y2.shape[1]
        self._check_params(k)
        self.n_outputs_ = k
        rng = check_random_state(self.random_state)
        self._seed = seed = int(rng.randint(np.iinfo(np.int32).max))

        low, high = y2.min(0).astype(np.float64), y2.max(0).astype(np.float64)
        span = high - low
        pad = np.where(span > 0, self.y_margin * span, 1.0)
        self.y_bounds_ = (low - pad, high + pad)
        x_mean, x_scale = X.mean(0), X.std(0)
        x_scale = np.where(x_scale > 0, x_scale, 1.0)

        # The initial weights depend on the seed alone: torch's global RNG and default dtype
        # are restored afterwards.
        default_dtype = torch.get_default_dtype()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            torch.set_default_dtype(torch.float32)
            try:
                hidden = tuple(self.hidden_layer_sizes)
                net = (
                    _TemperedMLP(k, X.shape[1], hidden, self.activation)
                    if self._uses_temperature()
                    else MLPEnergy(k, X.shape[1], hidden=hidden, activation=self.activation)
                )
            finally:
                torch.set_default_dtype(default_dtype)
        net = net.to(device=self.device)
        center = (self.y_bounds_[0] + self.y_bounds_[1]) / 2
        half = (self.y_bounds_[1] - self.y_bounds_[0]) / 2
        energy = _Standardized(net, self._tensor(x_mean), self._tensor(x_scale),
                               self._tensor(center), self._tensor(half))
        x_s = energy.scale_x(self._tensor(X))
        y_s = energy.scale_y(self._tensor(y2))
        box = _unit_box(k)
        loss, negatives = self._training_loss(box, k)
        opt = torch.optim.Adam(net.parameters(), lr=self._learning_rate())
        cosine = self.learning_rate_schedule == "cosine" or (
            self.learning_rate_schedule == "auto" and self.loss == "ml")
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(self.max_iter))
                     if cosine else None)
        self.history_ = fit(
            net, {"y": y_s, "x": x_s}, loss, negatives=negatives, optimizer=opt,
            scheduler=scheduler, on_divergence="ignore" if self.loss == "ml" else "rollback",
            num_steps=int(self.max_iter), batch_size=int(self.batch_size), seed=seed,
            progress=bool(self.verbose), description="ImplicitRegressor",
            log_every=max(1, min(50, int(self.max_iter))),
        )
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.energy_ = energy
        self.n_iter_ = self.history_.final_step
        return self

    def _learning_rate(self) -> float:
        if self.learning_rate == "auto":
            return 0.03 if self.loss == "ml" else 3e-3
        return float(self.learning_rate)

    def _uses_temperature(self) -> bool:
        if self.input_temperature == "auto":
            return self.loss == "ml"
        return bool(self.input_temperature)

    def _training_loss(self, box: Box, k: int) -> tuple[Any, Any]:
        n = int(self.n_counter_examples)
        if self.loss == "nce":
            return "nce", Uniform(box, num=n)
        if self.loss == "ml":
            # Half the draws on a jittered grid, half Gaussian at the positive.
            per_axis = max(2, round((n / 2) ** (1 / k)))
            per_scale = max(0, n - per_axis**k) // len(_LOCAL_SCALES)
            draws = _ImportanceGrid(box, per_axis, per_scale, _LOCAL_SCALES)

            def ml(e_pos: Tensor, e_all: Tensor) -> Tensor:
                return nll(e_pos, e_all, log_weights=draws.last_log_weights)

            return ml, draws
        num_inferred = round(self.inferred_fraction * n)
        negatives = _CounterExamples(box, n - num_inferred, num_inferred,
                                     int(self.langevin_steps), float(self.langevin_step_size))
        weight, margin = float(self.gradient_penalty), float(self.gradient_margin)

        def ibc(e_pos: Tensor, e_neg: Tensor, energy: nn.Module, x: Tensor) -> Tensor:
            value = info_nce(e_pos, e_neg)
            if weight > 0 and negatives.last_inferred is not None:
                value = value + weight * _ibc_gradient_penalty(
                    energy, negatives.last_inferred, x, margin)
            return value

        return ibc, negatives

    # -------------------------------------------------------------------------- inference

    def _inputs(self, X: Any) -> Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._tensor(X)

    def _box(self) -> Box:
        return Box(self.y_bounds_[0].astype(np.float32).tolist(),
                   self.y_bounds_[1].astype(np.float32).tolist())

    def _starts(self) -> Tensor:
        """Starts in the scaled box shared by every input: a grid for 1-D y, seeded draws beyond."""
        k, s = self.n_outputs_, int(self.n_starts)
        box = _unit_box(k)
        if k == 1:
            return box.grid(s, dtype=torch.float32, device=self.device).points  # (S, 1)
        gen = torch.Generator().manual_seed(self._seed)
        return box.sample(s, generator=gen, dtype=torch.float32).to(self.device)  # (S, k)

    def predict_modes(self, X: Any, max_modes: int | None = None) -> Inference:
        """Return every distinct minimum of :math:`E(x, \\cdot)` per input, best first.

        Inference runs on the network's scaled box :math:`[-1, 1]^k` from ``n_starts`` starts
        shared by every input, for exactly ``inference_steps`` steps, so each input's result
        depends on that input alone (predictions do not change with batching or row order).
        End points closer than 1 % of the box's diameter are one mode.

        Args:
            X: inputs (n_samples, n_features).
            max_modes: keep at most this many modes per input (``None``: all found).

        Returns:
            An :class:`ebmlab.Inference` with ``y`` (n, K, k) in the data's units,
            ``energy`` (n, K), ``valid``, ``count`` and the solver's flags.
        """
        x = self._inputs(X)
        if max_modes is not None and (
            isinstance(max_modes, bool) or not isinstance(max_modes, (int, np.integer))
            or max_modes < 1
        ):
            raise ValueError(f"max_modes must be an int >= 1 or None; got {max_modes!r}")
        energy, k = self.energy_, self.n_outputs_
        # Tolerances far below what the solver reaches in float32: every end point is kept
        # and merged (none is dropped because another start met a tolerance first).
        options = dict(domain=_unit_box(k), max_steps=int(self.inference_steps),
                       early_stop=False, gtol=1e-30, ftol=1e-30, merge_tol=0.02 * math.sqrt(k))
        x_s = energy.scale_x(x)
        with warnings.catch_warnings():
            # The fixed step budget is the design (batch invariance): the end points are
            # flagged converged=False in the result, a warning per call would only repeat it.
            warnings.filterwarnings("ignore", category=UserWarning, message=".*unconverged")
            result = infer(energy.net, x_s, solver=INFERENCE[self.inference],
                           init=self._starts(), **options)
            if self.inference == "gradient":
                # Adam's fixed step leaves each end point jittering by about its step size;
                # a second pass with a 10x smaller step polishes the max_modes best merged
                # modes (predict: one per input, not the batch's largest mode count).
                result = infer(energy.net, x_s, solver=Adam(lr=_POLISH_LR),
                               init=_first_modes(result, max_modes).y, **options)
        trajectory = result.trajectory
        result = dataclasses.replace(
            result, y=result.y * energy.y_half + energy.y_center,
            trajectory=None if trajectory is None else trajectory * energy.y_half
            + energy.y_center,
        )
        return _first_modes(result, max_modes)

    def predict(self, X: Any) -> np.ndarray:
        """Return the lowest-energy target per input: (n,) for 1-D y, (n, k) otherwise."""
        best = self.predict_modes(X, max_modes=1).best.double().cpu().numpy()
        return best[:, 0] if self._is_1d else best

    def _gibbs(self, x: Tensor) -> Gibbs:
        k = self.n_outputs_
        estimator = (
            Grid(num=_GRID_CELLS[k]) if k in _GRID_CELLS
            else Importance(num_samples=_IMPORTANCE_SAMPLES)
        )
        return Gibbs(self.energy_, x, domain=self._box(), estimator=estimator,
                     validate_args=False)

    def sample(self, X: Any, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        r"""Draw from :math:`p(y|x) \propto e^{-E(x, y)}` on ``y_bounds_``.

        Exact draws from the grid's piecewise-constant density for dim(y) ≤ 2;
        sampling-importance-resampling beyond.

        Returns:
            (n, n_samples) for 1-D y, (n, n_samples, k) otherwise.
        """
        x = self._inputs(X)
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or (
            n_samples < 1
        ):
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            draws = self._gibbs(x).sample((int(n_samples),), generator=gen)  # (S, n, k)
        out = draws.transpose(0, 1).double().cpu().numpy()  # (n, S, k)
        return out[..., 0] if self._is_1d else out

    def log_prob(self, X: Any, y: Any) -> np.ndarray:
        """Return :math:`\\log p(y_i|x_i)` per pair (nats; ``-inf`` outside ``y_bounds_``)."""
        x = self._inputs(X)
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1) if y.ndim <= 2 else y
        if y2.shape != (x.shape[0], self.n_outputs_):
            raise ValueError(
                f"y must have shape ({x.shape[0]},) or ({x.shape[0]}, {self.n_outputs_}); got "
                f"{y.shape}"
            )
        if not np.isfinite(y2).all():
            raise ValueError("Input y contains NaN or infinity.")
        with torch.no_grad():
            log_p = self._gibbs(x).log_prob(self._tensor(y2))
        return log_p.double().cpu().numpy()

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Return the mean log-likelihood :math:`\\frac1n\\sum_i \\log p(y_i|x_i)` (nats).

        Higher is better, as scikit-learn's model selection expects.
        """
        log_p = self.log_prob(X, y)
        return float(np.average(log_p, weights=sample_weight))
