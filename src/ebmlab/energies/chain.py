r"""``Chain``: a linear-chain energy over label sequences, solved exactly by dynamic programming.

.. math::
    E(x, y) = \sum_{t=1}^{L} U(x)_{t, y_t} + \sum_{t=1}^{L-1} T_{y_t, y_{t+1}},
    \qquad y \in \{0, \dots, K-1\}^L .

Min-sum dynamic programming (Viterbi, k-best) gives the exact minimisers; the forward algorithm
in log space gives :math:`\log Z_\beta(x) = \log\sum_y e^{-\beta E(x, y)}` and forward–backward
the exact marginals, all differentiable, in O(L K²) per input instead of :math:`K^L`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ebmlab._checks import check_beta, check_generator, check_positive_int, check_tensor
from ebmlab.discrete_domain import check_labels
from ebmlab.energy import Energy
from ebmlab.inference.result import Inference

__all__ = ["Chain", "viterbi", "forward_algorithm"]

Unary = nn.Module | Callable[[Tensor | None], Tensor] | Tensor


def viterbi(unary: Tensor, transitions: Tensor, top_k: int = 1) -> tuple[Tensor, Tensor]:
    r"""Return the ``top_k`` lowest-energy label sequences of a linear chain (min-sum DP).

    Each of the K states at each time keeps its k best partial paths, so the k best complete
    paths are exact (k-best Viterbi); cost O(L K² k log k) per input, batched over B.

    Args:
        unary: ``(B, L, K)`` unary energies :math:`U_{t, k}`.
        transitions: ``(K, K)`` transition energies :math:`T_{i, j}` (from i to j).
        top_k: the number k of sequences per input.

    Returns:
        ``(labels, energy)``: ``(B, k, L)`` long labels sorted by energy and ``(B, k)`` their
        energies; slots beyond the :math:`K^L` sequences that exist have energy ``+inf``.

    Example:
        >>> import torch
        >>> u = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
        >>> labels, energy = viterbi(u, torch.zeros(2, 2), top_k=2)
        >>> labels.tolist(), energy.tolist()
        ([[[0, 1, 0], [1, 1, 0]]], [[0.0, 1.0]])
    """
    b, length, k_states = unary.shape
    k = top_k
    unary = unary.detach()
    trans = transitions.detach()
    inf = torch.full((b, k_states, k - 1), math.inf, dtype=unary.dtype, device=unary.device)
    scores = torch.cat([unary[:, 0].unsqueeze(-1), inf], -1)  # (B, K, k)
    pointers = []
    for t in range(1, length):
        # (B, Kprev, 1, k) + (Kprev, Knext, 1) -> (B, Knext, Kprev * k)
        cand = scores.unsqueeze(2) + trans.unsqueeze(-1)
        cand = cand.permute(0, 2, 1, 3).reshape(b, k_states, k_states * k)
        best, index = torch.topk(cand, k, dim=-1, largest=False)  # Kprev * k >= k
        scores = best + unary[:, t].unsqueeze(-1)
        pointers.append(index)
    final = scores.reshape(b, k_states * k)
    energy, index = torch.topk(final, k, dim=-1, largest=False)
    state, rank = index // k, index % k  # (B, k)
    labels = [state]
    for index_t in reversed(pointers):
        prev = torch.gather(index_t.reshape(b, k_states * k), 1, state * k + rank)
        state, rank = prev // k, prev % k
        labels.append(state)
    return torch.stack(labels[::-1], -1), energy


def forward_algorithm(unary: Tensor, transitions: Tensor, beta: float = 1.0) -> Tensor:
    r"""Return the log forward messages :math:`\alpha_t(j)` ``(B, L, K)`` of :math:`e^{-\beta E}`.

    :math:`\alpha_1(j) = -\beta U_{1j}`, :math:`\alpha_t(j) = \log\sum_i e^{\alpha_{t-1}(i) -
    \beta T_{ij}} - \beta U_{tj}`; :math:`\log Z = \log\sum_j e^{\alpha_L(j)}`. Differentiable.
    """
    log_t = -beta * transitions  # (K, K)
    alpha = [-beta * unary[:, 0]]
    for t in range(1, unary.shape[1]):
        alpha.append(
            torch.logsumexp(alpha[-1].unsqueeze(2) + log_t, 1) - beta * unary[:, t]
        )
    return torch.stack(alpha, 1)


def _backward_algorithm(unary: Tensor, transitions: Tensor, beta: float) -> Tensor:
    log_t = -beta * transitions
    back = [torch.zeros_like(unary[:, -1])]
    for t in range(unary.shape[1] - 1, 0, -1):
        nxt = back[-1] - beta * unary[:, t]  # (B, K) over j
        back.append(torch.logsumexp(log_t.unsqueeze(0) + nxt.unsqueeze(1), 2))
    return torch.stack(back[::-1], 1)


class Chain(Energy):
    r"""A linear-chain energy over label sequences, solved exactly by dynamic programming.

    :math:`E(x, y) = \sum_t U(x)_{t, y_t} + \sum_t T_{y_t, y_{t+1}}` with unary energies from
    ``unary`` (low = good label) and a learnable ``(K, K)`` parameter ``transitions``. y is a
    ``(B, L)`` floating tensor of labels in ``0 .. K-1``. ``eb.infer(chain, x)`` runs batched
    (k-best) Viterbi; :meth:`log_partition` and :meth:`marginals` are the exact forward and
    forward–backward algorithms; :func:`ebmlab.losses.crf_nll` trains it as a linear-chain
    CRF, :func:`ebmlab.losses.structured_hinge` and ``structured_perceptron`` as the margin
    and perceptron losses of LeCun et al. (2006, §6).

    Args:
        unary: a module or callable ``x -> (B, L, K)``, or a fixed ``(L, K)`` tensor of
            unary energies (then ``x`` is ignored and may be ``None``).
        transitions: the initial ``(K, K)`` transition energies (from i to j), made a
            parameter (a given ``nn.Parameter`` is used as is).

    Raises:
        TypeError: if ``unary`` is neither callable nor a tensor.
        ValueError: if ``transitions`` is not square.

    References:
        Viterbi, IEEE Trans. Inf. Theory, 1967; Lafferty, McCallum and Pereira, "Conditional
        random fields", ICML 2001; LeCun, Chopra, Hadsell, Ranzato and Huang, "A tutorial on
        energy-based learning", 2006, §6.

    Example:
        >>> import torch, ebmlab as eb
        >>> chain = eb.energies.Chain(torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]]),
        ...                           torch.tensor([[0.0, 0.5], [0.5, 0.0]]))
        >>> chain(torch.tensor([[0.0, 1.0, 0.0]]))
        tensor([1.], grad_fn=<AddBackward0>)
        >>> labels, energy = chain.viterbi(None)
        >>> labels.tolist(), energy.tolist()
        ([[[0, 0, 0]]], [[1.0]])
    """

    def __init__(self, unary: Unary, transitions: Tensor) -> None:
        super().__init__()
        if isinstance(unary, Tensor):
            check_tensor(unary, "unary", min_ndim=2)
            if unary.ndim != 2:
                raise ValueError(
                    f"a tensor unary must have shape (L, K); got {tuple(unary.shape)}"
                )
            self.fixed_unary = unary if isinstance(unary, nn.Parameter) else nn.Parameter(
                unary.detach().clone())
            self.unary = None
        elif callable(unary):
            self.unary = unary
            self.fixed_unary = None
        else:
            raise TypeError(
                f"unary must be a module, a callable x -> (B, L, K) or an (L, K) tensor; got "
                f"{type(unary).__name__}"
            )
        check_tensor(transitions, "transitions", min_ndim=2)
        if transitions.ndim != 2 or transitions.shape[0] != transitions.shape[1]:
            raise ValueError(
                f"transitions must be a square (K, K) tensor; got {tuple(transitions.shape)}"
            )
        self.transitions = transitions if isinstance(transitions, nn.Parameter) else (
            nn.Parameter(transitions.detach().clone()))
        self.num_classes = int(transitions.shape[0])
        if self.fixed_unary is not None and self.fixed_unary.shape[1] != self.num_classes:
            raise ValueError(
                f"unary has {self.fixed_unary.shape[1]} classes but transitions "
                f"{self.num_classes}"
            )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def unary_energies(self, x: Tensor | None) -> Tensor:
        """Return the unary energies ``(B, L, K)`` for inputs ``x`` (B = 1 for a fixed unary)."""
        if self.fixed_unary is not None:
            b = 1 if x is None else x.shape[0]
            return self.fixed_unary.unsqueeze(0).expand(b, *self.fixed_unary.shape)
        assert self.unary is not None
        return self.unary(x)

    def _checked_unary(self, x: Tensor | None) -> Tensor:
        if x is not None:
            check_tensor(x, "x")
        u = self.unary_energies(x)
        if not isinstance(u, Tensor) or u.ndim != 3 or u.shape[-1] != self.num_classes:
            got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(
                f"unary returned {got}; expected (B, L, K) with K = {self.num_classes}"
            )
        if x is not None and u.shape[0] != x.shape[0]:
            raise ValueError(f"unary returned {u.shape[0]} rows for {x.shape[0]} inputs x")
        return u

    def __call__(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        check_tensor(y, "y", min_ndim=2)
        check_labels(y, self.num_classes, "y")
        u = self._checked_unary(x)
        if y.ndim != 2 or y.shape[1] != u.shape[1] or (x is not None and y.shape[0] != u.shape[0]):
            raise ValueError(
                f"y has shape {tuple(y.shape)}; expected (B, L) = (B, {u.shape[1]}) label "
                "sequences matching the unary energies"
            )
        return super().__call__(y, x)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.energy_of(self.unary_energies(x), y)

    def energy_of(self, unary: Tensor, y: Tensor) -> Tensor:
        """Return the energy ``(B,)`` of label sequences ``y`` (B, L) given ``unary`` energies."""
        labels = y.long()
        u = unary.expand(labels.shape[0], *unary.shape[1:]) if unary.shape[0] == 1 else unary
        e = u.gather(-1, labels.unsqueeze(-1)).squeeze(-1).sum(-1)
        return e + self.transitions[labels[:, :-1], labels[:, 1:]].sum(-1)

    def viterbi(self, x: Tensor | None, top_k: int = 1) -> tuple[Tensor, Tensor]:
        """Return the ``top_k`` best label sequences ``(B, k, L)`` (long) and their energies.

        See :func:`viterbi`; runs without autograd (recompute ``chain(y, x)`` for gradients).
        """
        check_positive_int(top_k, "top_k")
        with torch.no_grad():
            return viterbi(self._checked_unary(x), self.transitions, top_k)

    def infer_exact(self, x: Tensor | None = None, *, top_k: int = 1) -> Inference:
        """Return the exact ``top_k`` minimisers as an :class:`ebmlab.Inference` (for ``infer``).

        ``y`` is ``(B, k, L)`` float labels; slots beyond the sequences that exist are invalid.
        """
        labels, energy = self.viterbi(x, top_k)
        valid = torch.isfinite(energy)
        y = torch.where(valid.unsqueeze(-1), labels, labels[:, :1]).to(energy.dtype)
        return Inference(
            y=y,
            energy=energy,
            valid=valid,
            count=valid.sum(1),
            converged=valid.clone(),
            num_steps=0,
            num_unconverged=torch.zeros(energy.shape[0], dtype=torch.long,
                                        device=energy.device),
            num_diverged=torch.zeros(energy.shape[0], dtype=torch.long, device=energy.device),
        )

    def log_partition(self, x: Tensor | None = None, beta: float = 1.0) -> Tensor:
        r"""Return :math:`\log Z_\beta(x) = \log\sum_y e^{-\beta E(x, y)}`, ``(B,)`` (exact)."""
        check_beta(beta)
        alpha = forward_algorithm(self._checked_unary(x), self.transitions, beta)
        return torch.logsumexp(alpha[:, -1], -1)

    def marginals(self, x: Tensor | None = None, beta: float = 1.0) -> Tensor:
        r"""Return :math:`P_\beta(y_t = k \mid x)` ``(B, L, K)`` by forward–backward (exact)."""
        check_beta(beta)
        u = self._checked_unary(x)
        alpha = forward_algorithm(u, self.transitions, beta)
        back = _backward_algorithm(u, self.transitions, beta)
        log_z = torch.logsumexp(alpha[:, -1], -1)
        return torch.exp(alpha + back - log_z[:, None, None])

    def log_prob(self, y: Tensor, x: Tensor | None = None, beta: float = 1.0) -> Tensor:
        r"""Return :math:`\log P_\beta(y \mid x) = -\beta E(x, y) - \log Z_\beta(x)`, ``(B,)``."""
        return -beta * self(y, x) - self.log_partition(x, beta)

    @torch.no_grad()
    def sample(
        self,
        x: Tensor | None = None,
        num_samples: int = 1,
        *,
        beta: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Draw exact samples of :math:`P_\beta(y|x)` (forward filtering, backward sampling).

        Returns:
            ``(num_samples, B, L)`` float labels.
        """
        check_beta(beta)
        check_positive_int(num_samples, "num_samples")
        check_generator(generator)
        u = self._checked_unary(x)
        alpha = forward_algorithm(u, self.transitions, beta)  # (B, L, K)
        b, length, _ = u.shape

        def draw(logits: Tensor) -> Tensor:  # (N, B, K) -> (N, B)
            probs = torch.softmax(logits, -1)
            r = torch.rand(probs.shape[:-1] + (1,), generator=generator, dtype=probs.dtype,
                           device=probs.device)
            return (probs.cumsum(-1) < r).sum(-1).clamp_(max=self.num_classes - 1)

        state = draw(alpha[:, -1].expand(num_samples, b, -1))
        out = [state]
        log_t = -beta * self.transitions
        for t in range(length - 2, -1, -1):
            out.append(draw(alpha[:, t].unsqueeze(0) + log_t.T[state]))
            state = out[-1]
        return torch.stack(out[::-1], -1).to(u.dtype)
