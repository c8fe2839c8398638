"""Regularisers: energy L2, gradient penalty and the spectral-norm helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import ebmlab as eb
from ebmlab import losses


def test_energy_l2_hand_values():
    e_pos, e_neg = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    # 1 + 9 = 10 and 4 + 0.25 = 4.25.
    assert losses.energy_l2(e_pos, e_neg, reduction="none").tolist() == [10.0, 4.25]
    assert losses.energy_l2(e_pos, e_neg).item() == 7.125
    assert losses.energy_l2(e_pos, reduction="sum").item() == 5.0
    # K negatives per positive: per pair E_C^2 + E_Ik^2.
    out = losses.energy_l2(e_pos, torch.tensor([[0.0, 1.0], [2.0, -1.0]]), reduction="none")
    assert out.tolist() == [[1.0, 2.0], [8.0, 5.0]]
    e_pos = torch.tensor([0.3, -0.2], requires_grad=True)
    e_neg = torch.tensor([1.0, 0.1], requires_grad=True)
    assert torch.autograd.gradcheck(losses.energy_l2, (e_pos, e_neg))


def test_gradient_penalty_closed_form_on_a_quadratic():
    # grad F = S (y - mu): penalty |S (y - mu)|^2.
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    q = eb.energies.Quadratic(a, mean=[1.0, -1.0])
    y = torch.randn(7, 2)
    got = losses.gradient_penalty(q, y, reduction="none")
    expected = ((y - q.mean.detach()) @ a).square().sum(-1)
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-12)
    # It is differentiable in the energy's parameters (create_graph=True).
    got.mean().backward()
    assert q.precision.grad is not None and q.precision.grad.abs().sum() > 0


def test_gradient_penalty_handles_event_shapes():
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * (y**2).flatten(1).sum(-1))
    y = torch.randn(3, 2, 4)
    got = losses.gradient_penalty(energy, y, reduction="none")
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx((y**2).flatten(1).sum(-1).tolist(), abs=1e-12)


def test_spectral_norm_wraps_every_linear_once():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Sequential(nn.Linear(8, 8), nn.Tanh()))
    net.append(nn.Linear(8, 1))
    out = losses.spectral_norm(net, num_power_iterations=2)
    assert out is net
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert all(parametrize.is_parametrized(m, "weight") for m in linears)
    # Applying it again does not stack a second normalisation.
    losses.spectral_norm(net)
    assert all(len(m.parametrizations.weight) == 1 for m in linears)
    # A bare Linear is handled too.
    layer = losses.spectral_norm(nn.Linear(2, 2))
    assert parametrize.is_parametrized(layer, "weight")


def test_spectral_norm_makes_each_linear_map_one_lipschitz():
    energy = eb.energies.MLPEnergy(2, hidden=(16, 16), activation="tanh")
    with torch.no_grad():
        for m in energy.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(5.0)  # far from 1-Lipschitz before
    losses.spectral_norm(energy)
    energy.train()
    y = torch.randn(32, 2)
    # Power iteration runs once per training forward; the relative error of the sigma_max
    # estimate decays like (sigma_2 / sigma_1)^(2k), which depends on the random weights'
    # spectral gap, so check 1e-3 after k = 15 + 200 iterations (typically ~1e-10 by then).
    for _ in range(200):
        energy(y)
    energy.eval()
    tol = 1e-3
    for m in energy.modules():
        if isinstance(m, nn.Linear):
            sigma = torch.linalg.matrix_norm(m.weight.detach(), ord=2).item()
            assert sigma == pytest.approx(1.0, abs=tol)
    # tanh is 1-Lipschitz, so |grad_y F| <= prod sigma_i <= (1 + tol)^3 everywhere.
    penalty = losses.gradient_penalty(energy, 5 * torch.randn(256, 2), reduction="none")
    assert penalty.max().item() <= (1.0 + tol) ** 6


def test_regularizer_errors():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        losses.spectral_norm(lambda y: y)
    with pytest.raises(ValueError, match="num_power_iterations"):
        losses.spectral_norm(nn.Linear(2, 2), num_power_iterations=0)
    with pytest.raises(ValueError, match="e_neg has shape"):
        losses.energy_l2(torch.zeros(2), torch.zeros(5))
    with pytest.raises(TypeError, match="energy must be"):
        losses.gradient_penalty(None, torch.zeros(2, 2))
