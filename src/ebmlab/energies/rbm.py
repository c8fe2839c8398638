r"""Restricted Boltzmann machines: the binary ``RBM``, its free energy, the bipartite base.

An RBM is the best-known latent-variable EBM: :math:`E(v, h)` is bilinear in a visible layer v
and a binary hidden layer h, so the hidden layer marginalises in closed form (the free energy),
each layer is conditionally independent given the other (block Gibbs sampling,
:class:`ebmlab.samplers.BlockGibbs`), and :math:`\log Z` is exact by enumerating the smaller
binary layer.
"""

# layout: long because the RBM, its exact log Z, pseudo-likelihood and AIS belong together.
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmlab._checks import (
    check_beta,
    check_generator,
    check_positive,
    check_positive_int,
    check_tensor,
)
from ebmlab.discrete_domain import MAX_ENUMERATION, Binary
from ebmlab.energy import Energy, LatentEnergy
from ebmlab.partition.estimate import Estimate

__all__ = ["RBM", "RBMFreeEnergy", "BipartiteRBM", "ENUMERATION_CHUNK"]

# Enumerated layers are streamed in chunks of this many states: (chunk, V) tensors of a few MB.
ENUMERATION_CHUNK = 1 << 14


def check_unit_interval(v: Tensor, name: str = "v") -> None:
    """Raise ``ValueError`` unless every entry of ``v`` lies in [0, 1] (one synchronisation)."""
    if bool(((v < 0) | (v > 1) | torch.isnan(v)).any()):
        bad = v[(v < 0) | (v > 1) | torch.isnan(v)][:3].tolist()
        raise ValueError(
            f"{name} must hold binary values (or probabilities in [0, 1]) for a Bernoulli "
            f"RBM; got values such as {bad}"
        )


def check_binary(v: Tensor, name: str = "v") -> None:
    """Raise ``ValueError`` unless every entry of ``v`` is exactly 0 or 1."""
    bad = (v != 0) & (v != 1)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must be binary (entries 0 or 1) for an exact probability; got values "
            f"such as {v[bad][:3].tolist()}"
        )


def _bernoulli(p: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return (u < p).to(p.dtype)


class BipartiteRBM(LatentEnergy):
    """What every RBM shares: parameters, the hidden layer, conditionals and the free energy.

    A subclass defines the visible layer: ``visible_energy``, ``sample_visible``,
    ``hidden_energy`` (v summed or integrated out), ``free_energy_grad`` and ``check_values``.
    """

    num_visible: int
    num_hidden: int

    def _init_parameters(
        self, num_visible: int, num_hidden: int, init_scale: float,
        generator: torch.Generator | None,
    ) -> None:
        self.num_visible = check_positive_int(num_visible, "num_visible")
        self.num_hidden = check_positive_int(num_hidden, "num_hidden")
        check_generator(generator)
        dtype = torch.get_default_dtype()
        w = torch.randn(num_visible, num_hidden, generator=generator, dtype=dtype)
        self.weight = nn.Parameter(init_scale * w)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible, dtype=dtype))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden, dtype=dtype))
        self.y_shape = (num_visible,)
        self.z_shape = (num_hidden,)

    def extra_repr(self) -> str:
        return f"num_visible={self.num_visible}, num_hidden={self.num_hidden}"

    # Hot-path methods below do no validation (they are called inside sampling loops).
    def scaled_visible(self, v: Tensor) -> Tensor:
        """Return the visible units as the weights see them (``v``, or ``v / sigma``)."""
        return v

    def hidden_input(self, v: Tensor) -> Tensor:
        r"""Return :math:`c + W^\top v` (``v / sigma`` for Gaussian visibles), ``(B, H)``."""
        return torch.addmm(self.hidden_bias, self.scaled_visible(v), self.weight)

    def hidden_probability(self, v: Tensor, *, beta: float = 1.0) -> Tensor:
        r"""Return :math:`P(h_j = 1 \mid v) = \sigma(\beta (c + W^\top v)_j)`, ``(B, H)``."""
        return torch.sigmoid(beta * self.hidden_input(v))

    def sample_hidden(
        self, v: Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``h ~ P(h | v)`` at inverse temperature ``beta``, ``(B, H)`` of 0/1."""
        return _bernoulli(self.hidden_probability(v, beta=beta), generator)

    def forward(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        return self.visible_energy(y) - z @ self.hidden_bias - (
            (self.scaled_visible(y) @ self.weight) * z
        ).sum(-1)

    def pairwise(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Return the energy of every row of ``y`` (B, V) against every ``z`` (C, H), (B, C)."""
        vw = self.scaled_visible(y) @ self.weight  # (B, H)
        return self.visible_energy(y).unsqueeze(1) - (z @ self.hidden_bias).unsqueeze(0) - (
            vw @ z.T
        )

    def free_energy_from_input(
        self, v: Tensor, hidden_input: Tensor, beta: float = 1.0
    ) -> Tensor:
        r"""Return :math:`F_\beta(v)` given :meth:`hidden_input` of ``v`` (no validation)."""
        return self.visible_energy(v) - F.softplus(beta * hidden_input).sum(-1) / beta

    def marginal(self, beta: float = 1.0) -> RBMFreeEnergy:
        r"""Return the free energy :math:`F_\beta(v)` as an :class:`ebmlab.Energy` of v.

        It shares this RBM's parameters, so it can be trained with :func:`ebmlab.fit`,
        sampled with any kernel and inferred on like any other energy.
        """
        return RBMFreeEnergy(self, beta=beta)

    def _check_visible(self, v: Tensor, name: str = "v") -> None:
        check_tensor(v, name)
        if tuple(v.shape[1:]) != (self.num_visible,):
            raise ValueError(
                f"{name} has shape {tuple(v.shape)}; {type(self).__name__} expects "
                f"(B, num_visible) = (B, {self.num_visible})"
            )

    def _hidden_sum(self, beta: float, chunk_size: int) -> Tensor:
        r""":math:`\log \sum_h e^{-\beta G(h)}` over every hidden state, streamed in chunks."""
        domain = Binary(self.num_hidden)
        ref = self.weight
        total = ref.new_full((), -math.inf)
        for h in domain.chunks(chunk_size, dtype=ref.dtype, device=ref.device):
            total = torch.logaddexp(total, torch.logsumexp(-beta * self.hidden_energy(h, beta),
                                                           0))
        return total

    def visible_energy(self, v: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def hidden_energy(self, h: Tensor, beta: float = 1.0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def free_energy_grad(
        self, v: Tensor, hidden_input: Tensor, beta: float = 1.0
    ) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def check_values(self, v: Tensor, name: str = "v") -> None:
        """Raise ``ValueError`` if ``v`` holds values outside the visible layer's support."""

    def _check_enumerable(self, num_units: int, layer: str) -> None:
        if 2**num_units > MAX_ENUMERATION:
            raise ValueError(
                f"log_partition enumerates the smaller layer: 2^{num_units} {layer} states "
                f"exceed the limit {MAX_ENUMERATION} (2^{int(math.log2(MAX_ENUMERATION))}); "
                "estimate log Z with estimate_log_partition(method='ais') instead"
            )


class RBM(BipartiteRBM):
    r"""A binary restricted Boltzmann machine, a :class:`ebmlab.LatentEnergy` of (v, h).

    .. math::
        E(v, h) = -b^\top v - c^\top h - v^\top W h, \qquad
        F(v) = -\frac1\beta\log\sum_h e^{-\beta E(v, h)}
             = -b^\top v - \frac1\beta\sum_j \operatorname{softplus}(\beta(c + W^\top v)_j)

    with ``y = v`` in :math:`\{0,1\}^V` (probabilities in [0, 1] are accepted by the free
    energy, as scikit-learn's ``BernoulliRBM`` does for grey levels) and ``z = h`` in
    :math:`\{0,1\}^H`. Both conditionals factorise:
    :math:`P(h_j{=}1|v) = \sigma(\beta(c + W^\top v)_j)`,
    :math:`P(v_i{=}1|h) = \sigma(\beta(b + W h)_i)`. :meth:`log_partition` is exact by
    enumerating the smaller layer (at most ``2^24`` states, in chunks).

    Args:
        num_visible: V.
        num_hidden: H.
        init_scale: standard deviation of the initial weights (biases start at 0), 0.01 as in
            scikit-learn and Hinton's guide.
        generator: random source of the initial weights.

    Raises:
        ValueError: if a size is below 1.

    References:
        Smolensky, 1986; Hinton, "Training products of experts by minimizing contrastive
        divergence", Neural Computation, 2002; Tieleman, "Training restricted Boltzmann
        machines using approximations to the likelihood gradient", ICML 2008 (PCD);
        Salakhutdinov and Murray, "On the quantitative analysis of deep belief networks",
        ICML 2008 (AIS).

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.RBM(3, 2, generator=torch.Generator().manual_seed(0))
        >>> v = torch.tensor([[1.0, 0.0, 1.0]])
        >>> rbm.free_energy(v).shape, rbm.log_partition().shape
        (torch.Size([1]), torch.Size([]))
        >>> bool(rbm.log_prob(v).exp() < 1)
        True
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        *,
        init_scale: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self._init_parameters(num_visible, num_hidden, init_scale, generator)

    def __call__(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        out = super().__call__(y, z, x)
        check_unit_interval(y, "y")
        check_binary(z, "z")
        return out

    def visible_energy(self, v: Tensor) -> Tensor:
        r"""Return :math:`-b^\top v`, ``(B,)``."""
        return -(v @ self.visible_bias)

    def visible_input(self, h: Tensor) -> Tensor:
        r"""Return :math:`b + W h`, ``(B, V)``."""
        return torch.addmm(self.visible_bias, h, self.weight.T)

    def visible_probability(self, h: Tensor, *, beta: float = 1.0) -> Tensor:
        r"""Return :math:`P(v_i = 1 \mid h) = \sigma(\beta (b + W h)_i)`, ``(B, V)``."""
        return torch.sigmoid(beta * self.visible_input(h))

    def sample_visible(
        self, h: Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``v ~ P(v | h)`` at inverse temperature ``beta``, ``(B, V)`` of 0/1."""
        return _bernoulli(self.visible_probability(h, beta=beta), generator)

    def hidden_energy(self, h: Tensor, beta: float = 1.0) -> Tensor:
        r"""Return the free energy of h (v summed out), :math:`G_\beta(h)`, ``(C,)``."""
        return -(h @ self.hidden_bias) - F.softplus(beta * self.visible_input(h)).sum(-1) / beta

    def free_energy_grad(self, v: Tensor, hidden_input: Tensor, beta: float = 1.0) -> Tensor:
        r"""Return :math:`\nabla_v F_\beta = -b - W\sigma(\beta a)` given the hidden input a."""
        return -torch.addmm(self.visible_bias, torch.sigmoid(beta * hidden_input), self.weight.T)

    def check_values(self, v: Tensor, name: str = "v") -> None:
        """Raise ``ValueError`` unless ``v`` lies in [0, 1] (binary, or probabilities)."""
        check_unit_interval(v, name)

    def free_energy(self, v: Tensor, *, beta: float = 1.0) -> Tensor:
        r"""Return :math:`F_\beta(v)` in closed form, ``(B,)``.

        Raises:
            ValueError: if ``v`` has the wrong shape or entries outside [0, 1].
        """
        self._check_visible(v)
        check_unit_interval(v)
        check_beta(beta)
        return self.free_energy_from_input(v, self.hidden_input(v), beta)

    def log_partition(self, *, beta: float = 1.0, chunk_size: int = ENUMERATION_CHUNK) -> Tensor:
        r"""Return the exact :math:`\log Z_\beta = \log\sum_{v,h} e^{-\beta E(v,h)}` (0-dim).

        The smaller layer is enumerated in chunks and the other summed in closed form;
        differentiable in the parameters.

        Raises:
            ValueError: if the smaller layer has more than 24 units (``2^24`` states).
        """
        check_beta(beta)
        check_positive_int(chunk_size, "chunk_size")
        if self.num_hidden <= self.num_visible:
            self._check_enumerable(self.num_hidden, "hidden")
            return self._hidden_sum(beta, chunk_size)
        self._check_enumerable(self.num_visible, "visible")
        ref = self.weight
        total = ref.new_full((), -math.inf)
        for v in Binary(self.num_visible).chunks(chunk_size, dtype=ref.dtype, device=ref.device):
            e = self.free_energy_from_input(v, self.hidden_input(v), beta)
            total = torch.logaddexp(total, torch.logsumexp(-beta * e, 0))
        return total

    @torch.no_grad()
    def contrastive_gradient(
        self, v_data: Tensor, v_model: Tensor, model_hidden_input: Tensor | None = None
    ) -> None:
        r"""Set the parameters' ``.grad`` to that of :math:`\bar F(v_{data}) - \bar F(v_{model})`.

        The closed form of the CD/PCD gradient (no autograd graph, no validation: a training
        hot path): :math:`\nabla_W = -(v_d^\top \sigma(a_d) - v_m^\top \sigma(a_m)) / B` and
        likewise for the biases, with :math:`a = c + W^\top v`. Pass the chains' cached
        ``model_hidden_input`` (:class:`ebmlab.samplers.BlockGibbsState`) to save a product.
        Then step any optimiser; with SGD this is scikit-learn's ``BernoulliRBM`` update.
        """
        a_model = self.hidden_input(v_model) if model_hidden_input is None else model_hidden_input
        h_data = torch.sigmoid(self.hidden_input(v_data))
        h_model = torch.sigmoid(a_model)
        n = v_data.shape[0]
        grad_w = torch.mm(v_model.T, h_model).sub_(torch.mm(v_data.T, h_data)).div_(n)
        grad_b = (v_model.sum(0) - v_data.sum(0)).div_(n)
        grad_c = (h_model.sum(0) - h_data.sum(0)).div_(n)
        for p, g in ((self.weight, grad_w), (self.visible_bias, grad_b),
                     (self.hidden_bias, grad_c)):
            p.grad = g

    @torch.no_grad()
    def fit_pcd(
        self,
        data: Tensor,
        *,
        learning_rate: float = 0.1,
        num_epochs: int = 10,
        batch_size: int = 10,
        generator: torch.Generator | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        r"""Train by persistent contrastive divergence (PCD-1) with plain SGD, in place.

        scikit-learn's ``BernoulliRBM.fit``: ``batch_size`` persistent chains (starting at
        v = 0) make one block Gibbs sweep per batch, the hidden draw using the chains' hidden
        input under the previous parameters; then
        :math:`\theta \leftarrow \theta - \eta \nabla(\bar F(v_{data}) - \bar F(v_{chains}))`
        in closed form. Batches are taken in order (shuffle ``data`` first), the last
        incomplete one dropped.

        It is the loop of :class:`ebmlab.samplers.BlockGibbs` steps,
        :meth:`contrastive_gradient` and ``torch.optim.SGD`` fused into eight tensor operations
        per batch, with the same random draws: each epoch's uniforms are drawn from
        ``generator`` at once (in the order the step-by-step loop draws them); the biases
        live in one augmented matrix :math:`\begin{pmatrix} W & b \\ c^\top & 0
        \end{pmatrix}`, so that a hidden or visible input is one product with a ones column,
        and the update of all three parameters is two in-place ``addmm_`` (data rows
        :math:`+\eta/B`, chain rows :math:`-\eta/B`); batches are laid out once (a copy of
        ``data`` with a ones column), every intermediate lives in a buffer allocated once,
        and there is no autograd graph and no validation in the loop. The parameters are
        written back after every epoch (``.grad`` is not touched). The result agrees with the
        step-by-step loop up to rounding (the sums are grouped differently; the tests check
        it).

        Args:
            data: training vectors ``(N, V)`` in [0, 1] (binary, or grey levels).
            learning_rate: the SGD step :math:`\eta` > 0.
            num_epochs: passes over ``data``.
            batch_size: rows per step, also the number of persistent chains.
            generator: the random source.
            on_epoch: called as ``on_epoch(epoch, seconds)`` after each epoch (1-based);
                its own draws from ``generator`` come between epochs, as in the plain loop.

        Returns:
            The seconds each epoch took (excluding ``on_epoch``).

        Raises:
            ValueError: for a bad size, a learning rate that is not > 0, or ``data`` of the
                wrong shape or outside [0, 1].

        Example:
            >>> import torch, ebmlab as eb
            >>> g = torch.Generator().manual_seed(0)
            >>> rbm = eb.energies.RBM(6, 4, generator=g)
            >>> data = (torch.rand(100, 6, generator=g) < 0.3).float()
            >>> len(rbm.fit_pcd(data, learning_rate=0.05, num_epochs=2, generator=g))
            2
        """
        self._check_visible(data, "data")
        check_unit_interval(data, "data")
        lr = check_positive(learning_rate, "learning_rate")
        check_positive_int(num_epochs, "num_epochs")
        b = check_positive_int(batch_size, "batch_size")
        check_generator(generator)
        num_batches = data.shape[0] // b
        if num_batches == 0:
            raise ValueError(
                f"batch_size={b} is larger than the {data.shape[0]} rows of data"
            )
        w, vb, hb = self.weight, self.visible_bias, self.hidden_bias
        nv, nh = self.num_visible, self.num_hidden
        packed = w.new_zeros(nv + 1, nh + 1)  # [[W, b], [c, 0]]
        w_hidden = packed[:, :nh]  # (V+1, H): [v, 1] @ w_hidden = c + W^T v
        w_visible = packed[:nv].T  # (H+1, V): [h, 1] @ w_visible = b + W h
        packed[:nv, :nh], packed[:nv, nh], packed[nv, :nh] = w, vb, hb
        # Batch k is rows [chains (filled each step); data], with a ones column.
        rows = w.new_ones(num_batches, 2 * b, nv + 1)
        rows[:, b:, :nv] = data[: num_batches * b].to(w).reshape(num_batches, b, nv)
        batches = list(rows.unbind(0))
        chains = [x[:b, :nv] for x in batches]
        data_t, chains_t = [x[b:].T for x in batches], [x[:b].T for x in batches]
        hidden = w.new_ones(b, nh + 1)  # [h, 1]
        probs = w.new_ones(2 * b, nh + 1)  # [[P(h | chains), 1], [P(h | data), 1]]
        p_chains, p_data = probs[:b], probs[b:]
        h, p, p_h = hidden[:, :nh], probs[:, :nh], probs[:b, :nh]  # views, sliced once
        p_h.copy_(torch.sigmoid(hb))  # the chains start at v = 0: c + W^T 0 = c
        p_visible = w.new_empty(b, nv)
        step = lr / b
        times = []
        for epoch in range(num_epochs):
            start = time.perf_counter()
            # BlockGibbs.step draws (b, H) then (b, V) uniforms per batch: the same stream.
            uniforms = torch.rand(num_batches, b * (nh + nv), generator=generator,
                                  dtype=w.dtype, device=w.device)
            u_hidden = uniforms[:, : b * nh].unflatten(1, (b, nh)).unbind(0)
            u_visible = uniforms[:, b * nh :].unflatten(1, (b, nv)).unbind(0)
            for k, x in enumerate(batches):
                torch.lt(u_hidden[k], p_h, out=h)  # h ~ P(h | v), from the chains' last input
                torch.mm(hidden, w_visible, out=p_visible).sigmoid_()
                torch.lt(u_visible[k], p_visible, out=chains[k])  # v ~ P(v | h)
                torch.mm(x, w_hidden, out=p).sigmoid_()  # chains and data at once
                packed.addmm_(data_t[k], p_data, alpha=step)
                packed.addmm_(chains_t[k], p_chains, alpha=-step)
            w.copy_(packed[:nv, :nh])
            vb.copy_(packed[:nv, nh])
            hb.copy_(packed[nv, :nh])
            times.append(time.perf_counter() - start)
            if on_epoch is not None:
                on_epoch(epoch + 1, times[-1])
        return times

    def log_prob(self, v: Tensor, *, log_partition: Tensor | None = None) -> Tensor:
        r"""Return the exact :math:`\log P(v) = -F(v) - \log Z` of binary ``v``, ``(B,)``.

        Args:
            v: binary visible vectors ``(B, V)``.
            log_partition: a precomputed :meth:`log_partition` (computed here otherwise).

        Raises:
            ValueError: if ``v`` is not binary or has the wrong shape.
        """
        self._check_visible(v)
        check_binary(v)
        log_z = self.log_partition() if log_partition is None else log_partition
        return -self.free_energy_from_input(v, self.hidden_input(v)) - log_z

    def pseudo_log_likelihood(
        self, v: Tensor, *, sites: str = "all", generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Return the pseudo-log-likelihood :math:`\sum_i \log P(v_i \mid v_{-i})`, ``(B,)``.

        :math:`\log P(v_i|v_{-i}) = \log\sigma(F(\tilde v^{(i)}) - F(v))` with
        :math:`\tilde v^{(i)}` = v with site i flipped (:math:`1 - v_i`). ``sites="all"``
        sums the V terms; ``sites="random"`` is scikit-learn's stochastic estimate,
        :math:`V \log\sigma(F(\tilde v^{(i)}) - F(v))` at one uniformly drawn site per row
        (``BernoulliRBM.score_samples``).

        Raises:
            ValueError: a bad ``sites``, shape or value outside [0, 1].
        """
        self._check_visible(v)
        check_unit_interval(v)
        check_generator(generator)
        with torch.no_grad():
            a = self.hidden_input(v)  # (B, H)
            f = self.free_energy_from_input(v, a)
            if sites == "all":
                # Flipping site i changes v_i by d_i = 1 - 2 v_i: the hidden input by d_i W_i.
                d = 1.0 - 2.0 * v  # (B, V)
                a_flip = a.unsqueeze(1) + d.unsqueeze(2) * self.weight.unsqueeze(0)  # (B, V, H)
                f_flip = -(v @ self.visible_bias).unsqueeze(1) - d * self.visible_bias - (
                    F.softplus(a_flip).sum(-1)
                )
                return F.logsigmoid(f_flip - f.unsqueeze(1)).sum(-1)
            if sites == "random":
                rows = torch.arange(v.shape[0], device=v.device)
                i = torch.randint(self.num_visible, (v.shape[0],), generator=generator,
                                  device=v.device)
                flipped = v.clone()
                flipped[rows, i] = 1.0 - flipped[rows, i]
                f_flip = self.free_energy_from_input(flipped, self.hidden_input(flipped))
                return self.num_visible * F.logsigmoid(f_flip - f)
        raise ValueError(f"sites must be 'all' or 'random'; got {sites!r}")

    @torch.no_grad()
    def estimate_log_partition(
        self,
        method: str = "ais",
        *,
        num_chains: int = 100,
        num_temperatures: int = 1000,
        base_visible_bias: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Estimate:
        r"""Estimate :math:`\log Z` by annealed importance sampling or importance sampling.

        Both start from the base-rate model :math:`p_A(v) = \prod_i \sigma(a_i)^{v_i}
        \sigma(-a_i)^{1 - v_i}` with visible biases ``a`` (zero by default; the data's
        log-odds is the usual choice), for which :math:`Z_A = 2^H \prod_i (1 + e^{a_i})`.
        ``"importance"`` averages :math:`p^*(v)/p_A(v)` over ``num_chains`` draws of
        :math:`p_A`. ``"ais"`` anneals :math:`p_t^*(v) \propto e^{(1-t) a^\top v}
        \sum_h e^{-t E(v, h)}` through ``num_temperatures`` linearly spaced t with one
        block Gibbs transition at each (the unbiased weights of Neal 2001). The standard error
        is the delta method's over chains.

        Args:
            method: ``"ais"`` or ``"importance"``.
            num_chains: independent runs (weights) N.
            num_temperatures: intermediate distributions of AIS (ignored by importance).
            base_visible_bias: the base rate's log-odds ``a`` ``(V,)``.
            generator: the random source.

        Returns:
            An :class:`ebmlab.partition.Estimate` (0-dim value, stderr and ESS).

        References:
            Neal, "Annealed importance sampling", Statistics and Computing, 2001;
            Salakhutdinov and Murray, ICML 2008.
        """
        if method not in ("ais", "importance"):
            raise ValueError(f"method must be 'ais' or 'importance'; got {method!r}")
        check_positive_int(num_chains, "num_chains", minimum=2)
        check_positive_int(num_temperatures, "num_temperatures", minimum=1)
        check_generator(generator)
        w, b = self.weight, self.visible_bias
        base = torch.zeros_like(b) if base_visible_bias is None else base_visible_bias.to(b)
        if base.shape != b.shape:
            raise ValueError(
                f"base_visible_bias has shape {tuple(base.shape)}; expected (V,) = "
                f"({self.num_visible},)"
            )
        log_z_base = self.num_hidden * math.log(2.0) + float(F.softplus(base).sum())
        v = _bernoulli(torch.sigmoid(base).expand(num_chains, -1), generator)

        def log_unnormalised(v: Tensor, t: float) -> Tensor:
            # log p_t*(v) = (1 - t) a.v + t b.v + sum_j softplus(t (c + W^T v)_j)
            return v @ ((1 - t) * base + t * b) + F.softplus(t * self.hidden_input(v)).sum(-1)

        if method == "importance":
            log_w = log_unnormalised(v, 1.0) - log_unnormalised(v, 0.0)
        else:
            log_w = torch.zeros(num_chains, dtype=w.dtype, device=w.device)
            ts = torch.linspace(0.0, 1.0, num_temperatures + 1).tolist()
            for t_prev, t in zip(ts[:-1], ts[1:], strict=True):
                log_w += log_unnormalised(v, t) - log_unnormalised(v, t_prev)
                if t < 1.0:  # a transition that keeps p_t invariant
                    h = _bernoulli(torch.sigmoid(t * self.hidden_input(v)), generator)
                    v = _bernoulli(torch.sigmoid((1 - t) * base + t * self.visible_input(h)),
                                   generator)
        est = Estimate.from_log_weights(log_w)
        return Estimate(est.value + log_z_base, est.stderr, est.ess)


class RBMFreeEnergy(Energy):
    r"""The free energy :math:`F_\beta(v)` of an RBM as an :class:`ebmlab.Energy` (``marginal()``).

    Calling it validates the visible vectors (shape, and [0, 1] for a binary RBM);
    ``forward`` is the unchecked closed form; ``energy_and_grad`` is closed form too:
    :math:`\nabla_v F = -b - W\sigma(\beta a)` (divided by σ for Gaussian visibles, plus
    :math:`(v - b)/\sigma^2`).

    Args:
        rbm: an :class:`RBM` or :class:`ebmlab.energies.GaussianBernoulliRBM`.
        beta: the inverse temperature of the marginalisation.

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.RBM(4, 3)
        >>> free = rbm.marginal()
        >>> torch.allclose(free(torch.ones(2, 4)), rbm.free_energy(torch.ones(2, 4)))
        True
    """

    def __init__(self, rbm: BipartiteRBM, *, beta: float = 1.0) -> None:
        super().__init__()
        if not isinstance(rbm, BipartiteRBM):
            raise TypeError(f"rbm must be an eb.energies.RBM; got {type(rbm).__name__}")
        self.rbm = rbm
        self.beta = check_beta(beta)
        self.y_shape = (rbm.num_visible,)

    def __call__(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        out = super().__call__(y, x)
        self.rbm.check_values(y, "y")
        return out

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.rbm.free_energy_from_input(y, self.rbm.hidden_input(y), self.beta)

    @torch.no_grad()
    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = self.rbm.hidden_input(y)
        e = self.rbm.free_energy_from_input(y, a, self.beta)
        return e, self.rbm.free_energy_grad(y, a, self.beta)
