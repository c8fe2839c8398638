"""NLL/MMI, MEE and contrastive divergence: hand values, grid exactness, the beta -> inf limit."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab import losses


def test_nll_hand_values_on_a_discrete_set():
    # beta = 2, answers with energies (0, 1, 3), correct answer energy 1:
    # -log P = 2 * 1 + log(e^0 + e^-2 + e^-6).
    e_all = torch.tensor([[0.0, 1.0, 3.0]])
    expected = 2.0 + math.log(1 + math.exp(-2) + math.exp(-6))
    got = losses.nll(torch.tensor([1.0]), e_all, beta=2.0)
    assert got.item() == pytest.approx(expected, abs=1e-14)
    # With log weights w_k (quadrature / importance weights): log sum w_k e^{-beta E_k}.
    log_w = torch.tensor([0.0, math.log(2.0), math.log(0.5)])
    expected = 2.0 + math.log(1 + 2 * math.exp(-2) + 0.5 * math.exp(-6))
    got = losses.nll(torch.tensor([1.0]), e_all, beta=2.0, log_weights=log_w)
    assert got.item() == pytest.approx(expected, abs=1e-14)
    # A scalar log weight (log cell volume) adds log w to every row.
    got = losses.nll(torch.tensor([1.0]), e_all, beta=2.0, log_weights=math.log(0.1))
    expected = 2.0 + math.log(0.1) + math.log(1 + math.exp(-2) + math.exp(-6))
    assert got.item() == pytest.approx(expected, abs=1e-14)


def test_nll_probabilities_of_a_discrete_set_sum_to_one():
    e_all = torch.randn(5, 7)
    nll_each = torch.stack(
        [losses.nll(e_all[:, k], e_all, beta=0.7, reduction="none") for k in range(7)], -1
    )
    assert torch.exp(-nll_each).sum(-1).tolist() == pytest.approx([1.0] * 5, abs=1e-13)


def test_nll_is_exact_on_a_grid_for_a_gaussian_energy():
    # Quadratic F = (y-mu)'A(y-mu)/2 has log Z_beta = (d/2) log(2 pi / beta) - (1/2) log det A.
    # Midpoint quadrature of a Gaussian on [-9, 9]^2 with h = 0.06: the truncation error is
    # below e^{-beta lambda_min 8.5^2 / 2} ~ 1e-12 (lambda_min ~ 0.79, beta = 1.5) and the
    # midpoint error of an analytic integrand decays like e^{-2 pi^2 / (h^2 beta lambda_max)},
    # far below 1e-12, so 1e-9 is a safe bound.
    q = eb.energies.Quadratic([[2.0, 0.5], [0.5, 1.0]], mean=[0.3, -0.2])
    beta = 1.5
    grid = eb.Box([-9.0, -9.0], [9.0, 9.0]).grid(300)
    with torch.no_grad():
        e_grid = q(grid.points)  # (K,)
        y = torch.randn(4, 2)
        e_pos = q(y)
    exact = beta * e_pos + q.log_partition(beta)
    got = losses.nll(
        e_pos,
        e_grid.expand(4, -1),
        beta=beta,
        log_weights=math.log(grid.cell_volume),
        reduction="none",
    )
    assert got.tolist() == pytest.approx(exact.tolist(), abs=1e-9)
    # The precomputed log Z path gives the closed form exactly.
    got = losses.nll(e_pos, log_partition=q.log_partition(beta), beta=beta, reduction="none")
    assert got.tolist() == pytest.approx(exact.tolist(), abs=1e-13)
    got = losses.nll(e_pos, log_partition=torch.full((4,), q.log_partition(beta)), beta=beta)
    assert got.item() == pytest.approx(exact.mean().item(), abs=1e-13)


def test_nll_gradient_is_data_term_minus_model_expectation():
    # d/dtheta [beta F(y) + log Z] = beta (dF/dtheta(y) - E_P[dF/dtheta]); for F = theta_k on a
    # discrete set: d nll / d E_k = beta (1[k = c] - P_k).
    e_all = torch.tensor([[0.2, -0.5, 1.0]], requires_grad=True)
    beta = 1.3
    losses.nll(e_all[:, 0], e_all, beta=beta).backward()
    p = torch.softmax(-beta * e_all.detach(), -1)
    expected = beta * (torch.tensor([[1.0, 0.0, 0.0]]) - p)
    assert e_all.grad.tolist()[0] == pytest.approx(expected.tolist()[0], abs=1e-14)


def test_perceptron_is_the_beta_to_infinity_limit_of_nll_over_beta():
    # On a finite set of K answers with a unique minimum, define
    #   d(beta) = nll(beta) / beta - perceptron = (1/beta) log sum_k exp(-beta (E_k - E_min)).
    # The sum lies in [1, K], so 0 <= d(beta) <= log(K) / beta; moreover
    #   beta d(beta) = log(1 + sum_{k != min} e^{-beta Delta_k}) <= (K - 1) e^{-beta Delta_min},
    # so nll(beta)/beta -> perceptron at rate O(1/beta), and beta d(beta) -> 0 exponentially.
    k = 6
    e_all = torch.tensor([[0.3, -1.2, 0.9, 2.0, -0.7, 1.1], [1.0, 0.5, 0.0, 3.0, 2.0, 0.25]])
    e_pos = e_all[:, 0]
    perceptron = losses.perceptron(e_pos, e_all, reduction="none")
    sorted_e = e_all.sort(-1).values
    gap = (sorted_e[:, 1] - sorted_e[:, 0]).min().item()  # Delta_min = 0.25
    for beta in (0.5, 1.0, 10.0, 100.0, 1e3, 1e4):
        d = losses.nll(e_pos, e_all, beta=beta, reduction="none") / beta - perceptron
        assert (d >= -1e-12).all()
        assert (d <= math.log(k) / beta + 1e-12).all()
        assert (beta * d <= (k - 1) * math.exp(-beta * gap) + 1e-12).all()
    d = losses.nll(e_pos, e_all, beta=1e4, reduction="none") / 1e4 - perceptron
    assert d.abs().max().item() < 1e-12


def test_mee_hand_values_and_bounds():
    # P(correct) = e^{-1} / (e^{-1} + e^0 + e^{-2}) at beta = 1.
    e_all = torch.tensor([[1.0, 0.0, 2.0]])
    p = math.exp(-1) / (math.exp(-1) + 1 + math.exp(-2))
    assert losses.mee(torch.tensor([1.0]), e_all).item() == pytest.approx(1 - p, abs=1e-14)
    # beta = 3 sharpens it: P = e^{-3} / (e^{-3} + 1 + e^{-6}).
    p = math.exp(-3) / (math.exp(-3) + 1 + math.exp(-6))
    got = losses.mee(torch.tensor([1.0]), e_all, beta=3.0)
    assert got.item() == pytest.approx(1 - p, abs=1e-14)
    # Bounded in [0, 1] when the set contains the correct answer, = 1 - exp(-nll).
    e_all = 5 * torch.randn(20, 4)
    m = losses.mee(e_all[:, 1], e_all, beta=2.0, reduction="none")
    assert ((m >= 0) & (m <= 1)).all()
    n = losses.nll(e_all[:, 1], e_all, beta=2.0, reduction="none")
    assert m.tolist() == pytest.approx((1 - torch.exp(-n)).tolist(), abs=1e-14)


def test_contrastive_divergence_hand_values():
    e_pos, e_neg = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 0.0, 0.5])
    # mean E_pos - mean E_neg = (-0.5/3) - (3.5/3) = -4/3.
    assert losses.contrastive_divergence(e_pos, e_neg).item() == pytest.approx(-4.0 / 3)
    got = losses.contrastive_divergence(e_pos, e_neg, reduction="none").tolist()
    assert got == [-2.0, -2.0, 0.0]
    # K negatives per positive: mean over pairs = mean E_pos - mean E_neg.
    e_neg = torch.tensor([[3.0, 1.0], [0.0, 2.0], [0.5, -0.5]])
    got = losses.contrastive_divergence(e_pos, e_neg).item()
    assert got == pytest.approx(e_pos.mean().item() - e_neg.mean().item(), abs=1e-15)


def test_likelihood_losses_gradcheck():
    e_pos = torch.tensor([0.3, -0.4], requires_grad=True)
    e_all = torch.tensor([[0.1, 0.5, -0.2], [1.0, -1.0, 0.0]], requires_grad=True)
    log_w = torch.tensor([0.1, -0.3, 0.2], requires_grad=True)
    log_z = torch.tensor([0.7, -0.1], requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, a: losses.nll(p, a, beta=1.7), (e_pos, e_all))
    assert torch.autograd.gradcheck(
        lambda p, a, w: losses.nll(p, a, log_weights=w, reduction="none"), (e_pos, e_all, log_w)
    )
    assert torch.autograd.gradcheck(
        lambda p, z: losses.nll(p, log_partition=z, beta=2.0), (e_pos, log_z)
    )
    assert torch.autograd.gradcheck(
        lambda p, a: losses.mee(p, a, beta=0.8, reduction="none"), (e_pos, e_all)
    )
    e_neg = torch.tensor([0.2, 0.9], requires_grad=True)
    assert torch.autograd.gradcheck(losses.contrastive_divergence, (e_pos, e_neg))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: losses.nll(torch.zeros(2), torch.zeros(2, 3), beta=0.0), ValueError, "beta"),
        (lambda: losses.nll(torch.zeros(2), torch.zeros(2, 3), beta=-1.0), ValueError, "beta"),
        (lambda: losses.nll(torch.zeros(2), torch.zeros(2, 3), beta=math.inf), ValueError, "beta"),
        (lambda: losses.mee(torch.zeros(2), torch.zeros(2, 3), beta=0), ValueError, "beta"),
        (lambda: losses.nll(torch.zeros(2), torch.zeros(3, 3)), ValueError, "e_all has shape"),
        (lambda: losses.nll(torch.zeros(2), torch.zeros(2)), ValueError, "e_all has shape"),
        (lambda: losses.nll(torch.zeros(2)), ValueError, "exactly one of e_all"),
        (
            lambda: losses.nll(torch.zeros(2), torch.zeros(2, 3), log_partition=0.0),
            ValueError,
            "exactly one of e_all",
        ),
        (
            lambda: losses.nll(torch.zeros(2), torch.zeros(2, 3), log_weights=torch.zeros(4)),
            ValueError,
            "log_weights has shape",
        ),
        (
            lambda: losses.nll(torch.zeros(2), log_partition=torch.zeros(3)),
            ValueError,
            "log_partition has shape",
        ),
        (lambda: losses.nll(torch.zeros(2), log_partition="1"), TypeError, "log_partition"),
        (lambda: losses.nll(torch.zeros(2), beta="1", log_partition=0.0), TypeError, "beta"),
        (
            lambda: losses.contrastive_divergence(torch.zeros(2), torch.zeros(3)),
            ValueError,
            "e_neg has shape",
        ),
        (
            lambda: losses.mee(torch.zeros(2), torch.zeros(2, 3), reduction="max"),
            ValueError,
            "reduction",
        ),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_nll_with_importance_weights_estimates_log_z(generator):
    # Samples y_k ~ q = N(0, 2^2 I) with log_weights = -log q(y_k) - log K give
    # log Zhat = log mean_k e^{-beta F(y_k)} / q(y_k). By the delta method its standard error is
    # sd(w) / (sqrt(K) mean(w)) for the weights w_k; its Jensen bias (~ stderr^2 / 2) is far
    # smaller. 5 standard errors: false failure ~6e-7.
    q = eb.energies.Quadratic([[2.0, 0.5], [0.5, 1.0]], mean=[0.3, -0.2])
    beta, k, s = 1.0, 20000, 2.0
    samples = s * torch.randn(k, 2, generator=generator)
    log_q = -0.5 * (samples / s).square().sum(-1) - 2 * math.log(s * math.sqrt(2 * math.pi))
    with torch.no_grad():
        e_samples = q(samples)
        e_pos = q(torch.zeros(1, 2))
    log_w = -log_q - math.log(k)
    got = losses.nll(e_pos, e_samples[None], beta=beta, log_weights=log_w[None])
    exact = beta * e_pos.item() + q.log_partition(beta)
    w = torch.exp(-beta * e_samples - log_q)
    stderr = (w.std() / (math.sqrt(k) * w.mean())).item()
    assert abs(got.item() - exact) < 5 * stderr
    assert stderr < 0.02  # the check is informative
