"""Block Gibbs sampling of bipartite models (RBMs): h | v, then v | h, each layer at once."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmlab._checks import check_batch, check_beta, check_tensor
from ebmlab.samplers.state import Info

__all__ = ["BlockGibbs", "BlockGibbsState"]


class BlockGibbsState(NamedTuple):
    """Chains of a bipartite model: visible ``position`` and its cached free energy.

    Attributes:
        position: the visible units ``(chains, V)``.
        energy: the free energy :math:`F_\\beta(v)` at ``position``, ``(chains,)``.
        hidden_input: :math:`c + W^\\top v` at ``position`` ``(chains, H)``, cached because
            both the free energy and the next hidden draw need it.
    """

    position: Tensor
    energy: Tensor
    hidden_input: Tensor


def _bipartite(energy: Any) -> Any:
    # A marginal free energy (RBM.marginal()) samples its RBM.
    model = getattr(energy, "rbm", energy)
    for method in ("hidden_input", "sample_visible", "free_energy_from_input"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                "BlockGibbs needs a bipartite model such as eb.energies.RBM (or its marginal())"
                f" with hidden_input, sample_visible and free_energy_from_input; got "
                f"{type(energy).__name__}"
            )
    return model


class BlockGibbs:
    r"""Alternate exact draws :math:`h \sim P_\beta(h|v)` and :math:`v \sim P_\beta(v|h)`.

    For an RBM both conditionals factorise over units, so a step updates every unit of a
    layer at once; the chain on v leaves :math:`P_\beta(v) \propto e^{-\beta F_\beta(v)}`
    invariant (every step is accepted). ``eb.sample(rbm, v0, BlockGibbs(), n)`` returns the
    visible samples; the state also caches the hidden input :math:`c + W^\top v`, so a step
    costs two matrix products. Works on :class:`ebmlab.energies.RBM`,
    :class:`ebmlab.energies.GaussianBernoulliRBM` and their ``marginal()`` energies; with
    :class:`ebmlab.training.negatives.Sampled` (``init="buffer"``) it gives persistent CD.

    Args:
        beta: inverse temperature of the joint :math:`e^{-\beta E(v, h)}`.

    References:
        Geman and Geman, IEEE PAMI, 1984; Hinton, Neural Computation, 2002.

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.RBM(6, 3, generator=torch.Generator().manual_seed(0))
        >>> chain = eb.sample(rbm, torch.zeros(4, 6), eb.samplers.BlockGibbs(), 10,
        ...                   generator=torch.Generator().manual_seed(1))
        >>> chain.samples.shape, bool(((chain.samples == 0) | (chain.samples == 1)).all())
        (torch.Size([10, 4, 6]), True)
    """

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = check_beta(beta)

    def __repr__(self) -> str:
        return f"BlockGibbs(beta={self.beta})"

    @torch.no_grad()
    def init(self, y0: Tensor, energy: Any, x: Tensor | None = None) -> BlockGibbsState:
        """Return the state at visible ``y0`` ``(chains, V)``.

        Raises:
            TypeError: if ``energy`` is not a bipartite model or ``y0`` not a floating tensor.
            ValueError: if ``y0`` does not have shape ``(chains, V)``.
        """
        model = _bipartite(energy)
        check_tensor(y0, "y0")
        check_batch(y0, x, y_name="y0")
        if tuple(y0.shape[1:]) != (model.num_visible,):
            raise ValueError(
                f"y0 has shape {tuple(y0.shape)}; expected (chains, num_visible) = "
                f"(chains, {model.num_visible})"
            )
        y0 = y0.detach()
        a = model.hidden_input(y0)
        return BlockGibbsState(y0, model.free_energy_from_input(y0, a, self.beta), a)

    @torch.no_grad()
    def step(
        self,
        state: BlockGibbsState,
        energy: Any,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[BlockGibbsState, Info]:
        """Make one sweep h | v, v | h of every chain."""
        model = getattr(energy, "rbm", energy)
        a = state.hidden_input
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype, device=a.device)
        h = (u < torch.sigmoid(self.beta * a)).to(a.dtype)
        v = model.sample_visible(h, beta=self.beta, generator=generator)
        a = model.hidden_input(v)
        e = model.free_energy_from_input(v, a, self.beta)
        accepted = torch.ones(e.shape, dtype=torch.bool, device=e.device)
        return BlockGibbsState(v, e, a), Info(torch.ones_like(e), accepted, ~torch.isfinite(e))
