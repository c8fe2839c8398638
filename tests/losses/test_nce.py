"""NCE and InfoNCE: hand values, equivalences, consistency at the true density, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from ebmlab import losses


def _softplus(u: float) -> float:
    return math.log1p(math.exp(u))


def test_nce_hand_values_one_noise_sample_per_datum():
    # nu = 1: G = -E - log q. Data: G = -0.5 + 1 = 0.5; noise: G = -1 + 2 = 1.
    # loss = softplus(-0.5) + softplus(1).
    got = losses.nce(
        torch.tensor([0.5]), torch.tensor([1.0]), torch.tensor([-1.0]), torch.tensor([-2.0])
    )
    assert got.item() == pytest.approx(_softplus(-0.5) + _softplus(1.0), abs=1e-14)


def test_nce_hand_values_several_noise_samples():
    # nu = 3: G = -E - log q - log 3 for data and noise alike; the noise terms are summed.
    e_data, log_q_data = 0.2, -0.9
    e_noise, log_q_noise = [0.0, 1.0, -0.5], [-1.5, -0.3, -2.0]
    g_data = -e_data - log_q_data - math.log(3)
    expected = _softplus(-g_data) + sum(
        _softplus(-e - lq - math.log(3)) for e, lq in zip(e_noise, log_q_noise, strict=True)
    )
    got = losses.nce(
        torch.tensor([e_data]),
        torch.tensor([e_noise]),
        torch.tensor([log_q_data]),
        torch.tensor([log_q_noise]),
        reduction="none",
    )
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-14)


def test_nce_is_logistic_regression_of_data_against_noise():
    b, nu = 6, 4
    e_data, e_noise = torch.randn(b), torch.randn(b, nu)
    lq_data, lq_noise = torch.randn(b), torch.randn(b, nu)
    logit_data = -e_data - lq_data - math.log(nu)
    logit_noise = -e_noise - lq_noise - math.log(nu)
    expected = functional.binary_cross_entropy_with_logits(
        logit_data, torch.ones(b), reduction="sum"
    ) + functional.binary_cross_entropy_with_logits(
        logit_noise, torch.zeros(b, nu), reduction="sum"
    )
    got = losses.nce(e_data, e_noise, lq_data, lq_noise, reduction="sum")
    assert got.item() == pytest.approx(expected.item(), abs=1e-12)


def test_nce_gradient_vanishes_in_expectation_at_the_true_density(generator):
    # Data y ~ N(0, 1); noise ~ q = N(0, 2^2), nu = 2; model E_c(y) = y^2/2 + c. At the true
    # log normaliser c* = log sqrt(2 pi) the model density is the data density, and the NCE
    # objective is stationary there (its consistency, Gutmann & Hyvarinen 2012): E[d loss / dc] = 0.
    # Per-example gradients g_i are i.i.d.; |mean g| < 5 sd / sqrt(n) fails with probability
    # ~6e-7 (normal tail at 5 sigma; n = 20000 makes the CLT accurate).
    n, nu, s = 20000, 2, 2.0
    y = torch.randn(n, generator=generator)
    noise = s * torch.randn(n, nu, generator=generator)

    def log_q(u):
        return -0.5 * (u / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))

    c = torch.full((n,), 0.5 * math.log(2 * math.pi), requires_grad=True)
    loss = losses.nce(
        0.5 * y**2 + c, 0.5 * noise**2 + c.unsqueeze(-1), log_q(y), log_q(noise), reduction="none"
    )
    loss.sum().backward()
    g = c.grad
    assert abs(g.mean().item()) < 5 * g.std().item() / math.sqrt(n)
    # And it is not stationary at a wrong normaliser: c* + 0.5 gives a clearly non-zero mean.
    c_bad = torch.full((n,), 0.5 * math.log(2 * math.pi) + 0.5, requires_grad=True)
    losses.nce(
        0.5 * y**2 + c_bad,
        0.5 * noise**2 + c_bad.unsqueeze(-1),
        log_q(y),
        log_q(noise),
        reduction="none",
    ).sum().backward()
    assert abs(c_bad.grad.mean().item()) > 10 * c_bad.grad.std().item() / math.sqrt(n)


def test_info_nce_hand_values():
    # -log softmax of the positive among (E_C, E_1, E_2) = (1, 0, 2):
    # 1 + log(e^-1 + e^0 + e^-2).
    got = losses.info_nce(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]))
    assert got.item() == pytest.approx(1 + math.log(math.exp(-1) + 1 + math.exp(-2)), abs=1e-14)
    # One counter-example given as shape S: -log(e^-1 / (e^-1 + e^0)) = log(1 + e).
    got = losses.info_nce(torch.tensor([1.0]), torch.tensor([0.0]))
    assert got.item() == pytest.approx(math.log(1 + math.e), abs=1e-14)
    # beta = 2: 2 + log(e^-2 + 1 + e^-4).
    got = losses.info_nce(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), beta=2.0)
    assert got.item() == pytest.approx(2 + math.log(math.exp(-2) + 1 + math.exp(-4)), abs=1e-14)


def test_info_nce_is_nll_over_positive_and_counter_examples():
    e_pos, e_neg = torch.randn(5), torch.randn(5, 8)
    expected = losses.nll(e_pos, torch.cat([e_pos[:, None], e_neg], -1), beta=0.6)
    assert losses.info_nce(e_pos, e_neg, beta=0.6).item() == pytest.approx(expected.item())
    # Equals cross-entropy with target class 0 over logits -E.
    logits = -torch.cat([e_pos[:, None], e_neg], -1)
    ce = functional.cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    assert losses.info_nce(e_pos, e_neg).item() == pytest.approx(ce.item(), abs=1e-14)


def test_nce_losses_gradcheck():
    e_data = torch.tensor([0.3, -0.2], requires_grad=True)
    e_noise = torch.tensor([[0.1, 0.8, -0.4], [0.5, 0.0, 1.2]], requires_grad=True)
    lq_data = torch.tensor([-1.0, -0.5], requires_grad=True)
    lq_noise = torch.tensor([[-0.7, -1.1, -0.2], [-2.0, -0.9, -1.3]], requires_grad=True)
    assert torch.autograd.gradcheck(losses.nce, (e_data, e_noise, lq_data, lq_noise))
    assert torch.autograd.gradcheck(
        lambda p, n: losses.info_nce(p, n, beta=1.5, reduction="none"), (e_data, e_noise)
    )


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: losses.nce(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(3)),
            ValueError,
            "e_noise has shape",
        ),
        (
            lambda: losses.nce(
                torch.zeros(2), torch.zeros(2, 3), torch.zeros(3), torch.zeros(2, 3)
            ),
            ValueError,
            "log_q_data has shape",
        ),
        (
            lambda: losses.nce(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)),
            ValueError,
            "log_q_noise has shape",
        ),
        (
            lambda: losses.nce(
                torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.float32), torch.zeros(2)
            ),
            TypeError,
            "dtype",
        ),
        (lambda: losses.info_nce(torch.zeros(2), torch.zeros(3, 4)), ValueError, "e_neg has"),
        (lambda: losses.info_nce(torch.zeros(2), torch.zeros(2), beta=0.0), ValueError, "beta"),
        (
            lambda: losses.info_nce(torch.zeros(2), torch.zeros(2), reduction="mean "),
            ValueError,
            "reduction",
        ),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
