"""Leapfrog: O(h^2) energy error, reversibility, reflection; the one-step moves; dual averaging."""

from __future__ import annotations

import math

import torch

import ebmlab as eb
from ebmlab.samplers import langevin_step, leapfrog, leapfrog_step, reflect
from ebmlab.samplers.adaptation import DualAveraging


def _max_energy_error(energy, h, generator):
    # Fixed trajectory length T = 1: L = 1 / h steps from 200 random phase-space points.
    y = torch.randn(200, 2, generator=generator)
    p = torch.randn(200, 2, generator=generator)
    e, g = energy.energy_and_grad(y)
    y1, p1, e1, _ = leapfrog(y, p, g, energy, None, h, round(1.0 / h))
    dh = (e1 + 0.5 * (p1 * p1).sum(-1)) - (e + 0.5 * (p * p).sum(-1))
    return float(dh.abs().max())


def test_leapfrog_energy_error_is_second_order(generator):
    # Leapfrog conserves a shadow Hamiltonian H + h^2 H_2 + O(h^4), so over a fixed time the
    # energy error is h^2 (H_2(z_0) - H_2(z_T)) + O(h^4): halving h divides it by 4. We accept
    # ratios in [3.5, 4.5] (the O(h^2) relative correction is below 5 % at h <= 0.05).
    for energy in (eb.energies.Quadratic(torch.tensor([[2.0, 0.3], [0.3, 1.0]])),
                   eb.energies.GaussianMixture.ring(4, radius=1.0, scale=0.7)):
        errors = [_max_energy_error(energy, h, torch.Generator().manual_seed(0))
                  for h in (0.05, 0.025, 0.0125)]
        for coarse, fine in zip(errors, errors[1:], strict=False):
            assert 3.5 < coarse / fine < 4.5, errors


def test_leapfrog_is_exactly_reversible(generator):
    # Integrate L steps, flip the momentum, integrate L steps: back to the start up to
    # float64 rounding: ~1e-16 per step, amplified by the flow's Jacobian on the ring's
    # sharp components (measured up to 1.5e-10 over 64 chains, depending on the CPU's
    # kernels). 1e-8 still fails any scheme that is not reversible by ~5 orders of
    # magnitude (a mis-ordered half step leaves an O(h^2) = 2.5e-3 error).
    energy = eb.energies.GaussianMixture.ring(8)
    y = torch.randn(64, 2, generator=generator)
    p = torch.randn(64, 2, generator=generator)
    _, g = energy.energy_and_grad(y)
    y1, p1, _, g1 = leapfrog(y, p, g, energy, None, 0.05, 50)
    y2, p2, _, _ = leapfrog(y1, -p1, g1, energy, None, 0.05, 50)
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-8)
    torch.testing.assert_close(-p2, p, rtol=0, atol=1e-8)


def test_reflected_leapfrog_is_reversible_and_stays_in_the_box(generator):
    box = eb.Box([-0.5, -0.5], [0.5, 0.5])
    energy = eb.energies.Quadratic(torch.eye(2) * 0.5)
    bounds = box.bounds(torch.zeros(1))
    y = box.sample(64, generator=generator)
    p = 3.0 * torch.randn(64, 2, generator=generator)
    _, g = energy.energy_and_grad(y)
    y1, p1, _, g1 = leapfrog(y, p, g, energy, None, 0.1, 30, bounds=bounds)
    assert bool(box.contains(y1).all())
    y2, p2, _, _ = leapfrog(y1, -p1, g1, energy, None, 0.1, 30, bounds=bounds)
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-9)
    torch.testing.assert_close(-p2, p, rtol=0, atol=1e-9)


def test_reflect_folds_multiple_bounces():
    low, high = torch.tensor([0.0]), torch.tensor([1.0])
    y = torch.tensor([[0.25], [1.25], [2.25], [-0.25], [-1.25]])
    folded, p = reflect(y, torch.ones_like(y), low, high)
    torch.testing.assert_close(folded, torch.tensor([[0.25], [0.75], [0.25], [0.25], [0.75]]))
    assert p.flatten().tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]


def test_dual_averaging_finds_the_step_of_the_target_acceptance():
    # A toy kernel with acceptance exp(-h): the fixed point is h* = -log(0.65) = 0.431; the
    # averaged iterate's error decays like m^(-1/2) (Nesterov 2009): within 10 % at m = 2000.
    da = DualAveraging(1.0, 0.65, torch.zeros(()))
    h = torch.tensor(1.0)
    for _ in range(2000):
        h = da.update(torch.exp(-h))
    assert abs(da.final_step_size() - (-math.log(0.65))) < 0.043


def test_leapfrog_step_with_per_chain_coefficients(generator):
    # NUTS's move: signed steps per chain, coefficients precomputed, walls reflected; it is
    # kick-drift-kick with two fused multiply-adds around one gradient.
    energy = eb.energies.GaussianMixture.ring(4)
    y = torch.rand(6, 2, generator=generator) - 0.5
    p = torch.randn(6, 2, generator=generator)
    _, g = energy.energy_and_grad(y)
    step = torch.tensor([0.1, -0.1, 0.2, -0.2, 0.05, 0.3]).view(6, 1)
    inv_mass = torch.tensor([1.0, 0.5])
    bounds = (-torch.ones(2), torch.ones(2))
    y1, p1, e1, g1 = leapfrog_step(y, p, g, energy, None, step * -0.5, step * inv_mass, bounds)
    p_half = torch.addcmul(p, step * -0.5, g)
    y_ref, p_ref = reflect(torch.addcmul(y, step * inv_mass, p_half), p_half, *bounds)
    e_ref, g_ref = energy.energy_and_grad(y_ref)
    assert torch.equal(y1, y_ref) and torch.equal(e1, e_ref) and torch.equal(g1, g_ref)
    assert torch.equal(p1, torch.addcmul(p_ref, step * -0.5, g_ref))


def test_langevin_step_is_the_langevin_kernels_move():
    energy = eb.energies.GaussianMixture.ring(4)
    kernel = eb.samplers.Langevin(0.05, beta=2.0)
    state = kernel.init(torch.randn(5, 2), energy)
    new, _ = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
    y, xi = langevin_step(state.position, state.grad, -0.05, math.sqrt(2 * 0.05 / 2.0),
                          torch.Generator().manual_seed(0))
    assert torch.equal(new.position, y)
    torch.testing.assert_close(y, state.position - 0.05 * state.grad + math.sqrt(0.05) * xi)
