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
                                               metropolis=False,
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


def test_recovery_metropolis_step_accepts_by_the_mala_ratio():
    q = _quadratic()
    y = torch.zeros(64, 2, dtype=torch.float64)
    sigma, step_size = 0.3, 1.5  # a large step: about half the proposals are rejected
    got = losses.diffusion_recovery_likelihood(q, y, sigmas=(sigma,), num_steps=1,
                                               step_size=step_size,
                                               generator=torch.Generator().manual_seed(5),
                                               reduction="none")
    g = torch.Generator().manual_seed(5)  # levels, noise, then per step: randn, then rand
    torch.randint(1, (64,), generator=g)
    y_t = y + sigma * torch.randn(64, 2, generator=g, dtype=torch.float64)
    xi = torch.randn(64, 2, generator=g, dtype=torch.float64)
    coin = torch.rand(64, generator=g, dtype=torch.float64)
    h = step_size * sigma**2
    mean = torch.tensor([0.5, -0.5], dtype=torch.float64)
    prec = torch.tensor([2.0, 1.0], dtype=torch.float64)

    def u(z):  # the conditional's energy F(z) + |z - y_t|^2 / (2 sigma^2)
        return 0.5 * ((z - mean) ** 2 * prec).sum(-1) + ((z - y_t) ** 2).sum(-1) / (2 * sigma**2)

    def grad_u(z):
        return (z - mean) * prec + (z - y_t) / sigma**2

    prop = y_t - h * grad_u(y_t) + math.sqrt(2 * h) * xi
    log_q_fwd = -((prop - y_t + h * grad_u(y_t)) ** 2).sum(-1) / (4 * h)
    log_q_back = -((y_t - prop + h * grad_u(prop)) ** 2).sum(-1) / (4 * h)
    accept = coin.log() < u(y_t) - u(prop) + log_q_back - log_q_fwd
    assert 0 < int(accept.sum()) < 64  # both branches are exercised
    y_1 = torch.where(accept.unsqueeze(-1), prop, y_t)
    torch.testing.assert_close(got, (q(y) - q(y_1)).detach())


def test_recovery_metropolis_samples_the_conditional():
    # F = |y|^2 / 2 at y = 0: y_t ~ N(0, s^2 I) and the conditional is N(y_t / (1 + s^2),
    # s^2 / (1 + s^2) I), so E y_hat_i^2 = s^2 / (1 + s^2)^2 + s^2 / (1 + s^2) per coordinate.
    q = eb.energies.Quadratic(torch.eye(2, dtype=torch.float64))
    s2 = 0.25
    want = -(s2 / (1 + s2) ** 2 + s2 / (1 + s2))  # -E|y_hat|^2 / 2 over 2 coordinates
    y = torch.zeros(20000, 2, dtype=torch.float64)
    for metropolis, close in ((True, True), (False, False)):
        got = losses.diffusion_recovery_likelihood(q, y, sigmas=(0.5,), num_steps=30,
                                                   step_size=0.5, metropolis=metropolis,
                                                   generator=torch.Generator().manual_seed(6))
        # unadjusted steps of 0.5 sigma^2 are biased (too wide); the adjusted ones are exact
        assert (abs(float(got) - want) < 0.02) is close


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
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    # decayed to 0: the stochastic losses' last steps at lr 0.05 swing the mean by ~0.1
    eb.fit(model, y, loss, optimizer=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, 150), num_steps=150, batch_size=500, progress=False)
    assert abs(float(model.mean.detach()) - 1.0) < 0.1
