"""Diffusion recovery likelihood and energy discrepancy against their formulas on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab import losses


def _quadratic():
    return eb.energies.Quadratic([[2.0, 0.0], [0.0, 1.0]], mean=[0.5, -0.5]).double()


def test_recovery_likelihood_without_steps_is_f_data_minus_f_noisy():
    q = _quadratic()
    y = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = (0.1, 0.3)
    got = losses.diffusion_recovery_likelihood(q, y, sigmas=sigmas, num_steps=0,
                                               generator=torch.Generator().manual_seed(1),
                                               reduction="none")
    g = torch.Generator().manual_seed(1)  # the documented draw order: levels, then noise
    pick = torch.randint(2, (6,), generator=g)
    eps = torch.randn(6, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(sigmas, dtype=torch.float64)[pick].unsqueeze(-1)
    want = q(y) - q(y + sigma * eps)
    torch.testing.assert_close(got, want.detach())


def test_recovery_langevin_step_is_on_the_conditional():
    q = _quadratic()
    y = torch.zeros(3, 2, dtype=torch.float64)
    got = losses.diffusion_recovery_likelihood(q, y, sigmas=(0.2,), num_steps=1, step_size=0.5,
                                               generator=torch.Generator().manual_seed(2),
                                               reduction="none")
    g = torch.Generator().manual_seed(2)
    torch.randint(1, (3,), generator=g)
    y_t = y + 0.2 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    h = 0.5 * 0.04
    grad = (y_t - torch.tensor([0.5, -0.5], dtype=torch.float64)) * torch.tensor(
        [2.0, 1.0], dtype=torch.float64)  # grad of F at y_t; the Gaussian term is 0 there
    y_1 = y_t - h * grad + math.sqrt(2 * h) * torch.randn(3, 2, generator=g,
                                                          dtype=torch.float64)
    torch.testing.assert_close(got, (q(y) - q(y_1)).detach())


def test_energy_discrepancy_matches_its_formula():
    q = _quadratic()
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t, m, w = 0.2, 5, 1.0
    got = losses.energy_discrepancy(q, y, t=t, num_negatives=m, w=w,
                                    generator=torch.Generator().manual_seed(4),
                                    reduction="none")
    g = torch.Generator().manual_seed(4)
    xi = torch.randn(4, 2, generator=g, dtype=torch.float64)
    xi_neg = torch.randn(m, 4, 2, generator=g, dtype=torch.float64)
    y_neg = y + math.sqrt(t) * xi + math.sqrt(t) * xi_neg
    ratio = torch.exp(q(y) - torch.stack([q(row) for row in y_neg]))  # (M, B)
    want = torch.log(w / m + ratio.mean(0))
    torch.testing.assert_close(got, want.detach())


def test_energy_discrepancy_without_stabiliser_and_bad_options():
    flat = eb.FunctionEnergy(lambda y, x: 0 * y.sum(-1), y_shape=(1,))
    loss = losses.energy_discrepancy(flat, torch.zeros(3, 1), w=0.0,
                                     generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="t"):
        losses.energy_discrepancy(flat, torch.zeros(3, 1), t=0.0)
    with pytest.raises(ValueError, match="sigmas"):
        losses.diffusion_recovery_likelihood(flat, torch.zeros(3, 1), sigmas=())


def test_energy_gap_is_the_squared_difference_of_means():
    e_pos, e_neg = torch.tensor([1.0, 3.0]), torch.tensor([[4.0, 6.0], [8.0, 2.0]])
    assert losses.energy_gap(e_pos, e_neg).item() == pytest.approx((5.0 - 2.0) ** 2)


@pytest.mark.parametrize("loss", ["diffusion_recovery_likelihood", "energy_discrepancy"])
def test_new_losses_train_through_fit(loss):
    torch.manual_seed(0)
    model = eb.energies.Quadratic(torch.eye(1) * 0.5, mean=[0.0])
    y = 1.0 + 0.5 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0))
    eb.fit(model, y, loss, optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
           num_steps=150, batch_size=500, progress=False)
    assert abs(float(model.mean.detach()) - 1.0) < 0.1
