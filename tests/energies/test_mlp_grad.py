"""MLPEnergy.energy_and_grad: the written-out backward equals autograd's bit for bit."""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb


def _autograd(f: eb.Energy, y: torch.Tensor, x: torch.Tensor | None) -> tuple:
    return eb.Energy.energy_and_grad(f, y, x)


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "relu"])
@pytest.mark.parametrize("x_dim", [0, 3])
@pytest.mark.parametrize("hidden", [(16, 8), (128, 128), (7,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_autograd_bit_for_bit(activation, x_dim, hidden, dtype):
    torch.manual_seed(0)
    f = eb.energies.MLPEnergy(2, x_dim=x_dim, hidden=hidden, activation=activation).to(dtype)
    y = torch.randn(50, 2, dtype=dtype)
    x = torch.randn(50, x_dim, dtype=dtype) if x_dim else None
    e, g = f.energy_and_grad(y, x)
    e2, g2 = _autograd(f, y, x)
    assert torch.equal(e, e2) and torch.equal(g, g2)
    assert g.shape == y.shape and not e.requires_grad and not g.requires_grad


def test_hooks_and_subclasses_use_autograd():
    torch.manual_seed(0)
    f = eb.energies.MLPEnergy(2, hidden=(8,))
    assert f._plan() is not None
    handle = f.net[0].register_forward_hook(lambda m, i, o: o * 2)
    assert f._plan() is None
    y = torch.randn(5, 2)
    e, g = f.energy_and_grad(y)
    assert torch.equal(g, _autograd(f, y, None)[1])  # the hook is honoured
    handle.remove()

    class Shifted(eb.energies.MLPEnergy):
        def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
            return super().forward(y, x) + (y * y).sum(-1)

    s = Shifted(2, hidden=(8,))
    assert s._plan() is None
    assert torch.equal(s.energy_and_grad(y)[1], _autograd(s, y, None)[1])


def test_wrong_x_is_refused():
    with pytest.raises(ValueError, match="conditional"):
        eb.energies.MLPEnergy(2, x_dim=1, hidden=(4,)).energy_and_grad(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="unconditional"):
        eb.energies.MLPEnergy(2, hidden=(4,)).energy_and_grad(torch.zeros(3, 2), torch.zeros(3, 1))


def test_parameters_keep_their_gradients_out_of_it():
    f = eb.energies.MLPEnergy(2, hidden=(8,))
    f.energy_and_grad(torch.randn(4, 2))
    assert all(p.grad is None for p in f.parameters())
