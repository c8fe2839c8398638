"""Margin losses (LeCun et al. 2006, Table 1): hand values, gradcheck, zero at the margin."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab import losses

# Pairs chosen away from every kink (|m + E_C - E_I| >= 0.3, E_C - E_I away from 0 and M).
E_POS = [0.5, 2.0, -1.0, 1.2]
E_NEG = [1.0, 1.0, 3.0, 0.4]


def _softplus(u: float) -> float:
    return math.log1p(math.exp(u))


def _sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


# Scalar references written from the formulas of Table 1 / eqs. (6)-(17), independent of torch.
REFERENCES = {
    "hinge": lambda c, i: max(0.0, 1.0 + c - i),
    "log_loss": lambda c, i: _softplus(c - i),
    "lvq2": lambda c, i: min(1.5, max(0.0, c - i)),
    "mce": lambda c, i: _sigmoid(c - i),
    "square_square": lambda c, i: c * c + max(0.0, 1.0 - i) ** 2,
    "square_exp": lambda c, i: c * c + 0.7 * math.exp(-i),
    "contrastive_divergence": lambda c, i: c - i,
}
CALLS = {
    "hinge": lambda p, n, **kw: losses.hinge(p, n, 1.0, **kw),
    "log_loss": losses.log_loss,
    "lvq2": lambda p, n, **kw: losses.lvq2(p, n, 1.5, **kw),
    "mce": losses.mce,
    "square_square": lambda p, n, **kw: losses.square_square(p, n, 1.0, **kw),
    "square_exp": lambda p, n, **kw: losses.square_exp(p, n, 0.7, **kw),
    "contrastive_divergence": losses.contrastive_divergence,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_pair_losses_match_hand_computed_values(name):
    expected = [REFERENCES[name](c, i) for c, i in zip(E_POS, E_NEG, strict=True)]
    e_pos, e_neg = torch.tensor(E_POS), torch.tensor(E_NEG)
    fn = CALLS[name]
    assert fn(e_pos, e_neg, reduction="none").tolist() == pytest.approx(expected, abs=1e-14)
    assert fn(e_pos, e_neg, reduction="sum").item() == pytest.approx(sum(expected), abs=1e-13)
    assert fn(e_pos, e_neg).item() == pytest.approx(sum(expected) / len(expected), abs=1e-13)


def test_literal_values():
    # Worked by hand: hinge max(0, 1 + 0.5 - 1) = 0.5, max(0, 1 + 2 - 1) = 2,
    # max(0, 1 - 1 - 3) = 0, max(0, 1 + 1.2 - 0.4) = 1.8.
    e_pos, e_neg = torch.tensor(E_POS), torch.tensor(E_NEG)
    got = losses.hinge(e_pos, e_neg, 1.0, reduction="none").tolist()
    assert got == pytest.approx([0.5, 2.0, 0.0, 1.8], abs=1e-15)
    # square-square: 0.25 + 0 = 0.25; 4 + 0 = 4; 1 + 0 = 1; 1.44 + 0.36 = 1.8.
    got = losses.square_square(e_pos, e_neg, 1.0, reduction="none").tolist()
    assert got == pytest.approx([0.25, 4.0, 1.0, 1.8], abs=1e-15)
    # MCE at equal energies is sigma(0) = 1/2; log loss is log 2.
    assert losses.mce(torch.zeros(1), torch.zeros(1)).item() == 0.5
    assert losses.log_loss(torch.zeros(1), torch.zeros(1)).item() == pytest.approx(math.log(2))
    # Energy loss is the mean energy; perceptron E_C - min over the set.
    assert losses.energy_loss(torch.tensor([1.0, 2.0, 6.0])).item() == 3.0
    e_all = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    got = losses.perceptron(torch.tensor([3.0, 0.0]), e_all, reduction="none").tolist()
    assert got == [2.0, 0.0]
    got = losses.perceptron(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0]), reduction="none")
    assert got.tolist() == [2.0, 0.0]


def test_lvq2_relative_form_eq13():
    # min(1, max(0, (E_C - E_I) / (delta E_I))): (2 - 1)/(0.5 * 1) = 2 -> 1; (1.1 - 1)/0.5 = 0.2;
    # E_C < E_I -> 0. The ratio E_C/E_I saturates at 1 + delta = 1.5.
    e_pos, e_neg = torch.tensor([2.0, 1.1, 0.5]), torch.tensor([1.0, 1.0, 1.0])
    got = losses.lvq2(e_pos, e_neg, delta=0.5, reduction="none").tolist()
    assert got == pytest.approx([1.0, 0.2, 0.0], abs=1e-14)
    with pytest.raises(ValueError, match="saturation must be 1 when delta"):
        losses.lvq2(e_pos, e_neg, 2.0, delta=0.5)
    with pytest.raises(ValueError, match="delta"):
        losses.lvq2(e_pos, e_neg, delta=0.0)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_pair_losses_gradcheck(name):
    e_pos = torch.tensor(E_POS, requires_grad=True)
    e_neg = torch.tensor(E_NEG, requires_grad=True)
    fn = CALLS[name]
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n, reduction="none"), (e_pos, e_neg))
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n), (e_pos, e_neg))


def test_other_margin_losses_gradcheck():
    e_pos = torch.tensor(E_POS, requires_grad=True)
    e_neg = torch.tensor(E_NEG, requires_grad=True)
    e_all = torch.tensor([[0.3, -0.2, 1.0]] * 4, requires_grad=True)  # unique minimum
    assert torch.autograd.gradcheck(lambda p: losses.energy_loss(p, reduction="sum"), (e_pos,))
    assert torch.autograd.gradcheck(lambda p, n: losses.perceptron(p, n), (e_pos, e_neg))
    assert torch.autograd.gradcheck(lambda p, a: losses.perceptron(p, a), (e_pos, e_all))
    assert torch.autograd.gradcheck(
        lambda p, n: losses.lvq2(p, n.abs() + 0.5, delta=3.0), (e_pos, e_neg)
    )


def test_hinge_is_exactly_zero_when_margin_is_satisfied():
    e_pos = torch.tensor([0.0, -3.0, 1.5], requires_grad=True)
    margin = 2.0
    # E_I >= E_C + m exactly at the boundary and strictly beyond it.
    e_neg = torch.stack([e_pos[0] + margin, e_pos[1] + margin + 10.0, e_pos[2] + margin])
    loss = losses.hinge(e_pos, e_neg.detach().requires_grad_(True), margin)
    assert loss.item() == 0.0
    loss.backward()
    assert e_pos.grad.abs().max().item() == 0.0
    # Just inside the margin the loss is the shortfall.
    assert losses.hinge(torch.zeros(1), torch.tensor([1.75]), margin).item() == 0.25


def test_square_square_is_exactly_zero_when_margin_is_satisfied():
    e_pos = torch.zeros(3, requires_grad=True)
    e_neg = torch.tensor([1.0, 2.0, 50.0], requires_grad=True)  # E_I >= m = 1
    loss = losses.square_square(e_pos, e_neg, 1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert e_pos.grad.abs().max().item() == 0.0
    assert e_neg.grad.abs().max().item() == 0.0
    # Inside the margin the push is 2 (m - E_I) per pair, here 2 * 0.5 / 3 with the mean.
    e_neg = torch.tensor([0.5, 2.0, 3.0], requires_grad=True)
    losses.square_square(torch.zeros(3), e_neg, 1.0).backward()
    assert e_neg.grad.tolist() == pytest.approx([-1.0 / 3, 0.0, 0.0])


def test_lvq2_saturates_and_mce_is_bounded():
    e_pos = torch.tensor([100.0, -100.0])
    e_neg = torch.zeros(2)
    assert losses.lvq2(e_pos, e_neg, 2.0, reduction="none").tolist() == [2.0, 0.0]
    got = losses.mce(e_pos, e_neg, reduction="none").tolist()
    assert got[0] == pytest.approx(1.0) and 0.0 <= got[1] < 1e-40


def test_k_negatives_per_positive_form_pairs():
    e_pos = torch.tensor([0.0, 1.0])
    e_neg = torch.tensor([[0.5, 3.0, -1.0], [1.0, 1.0, 4.0]])
    out = losses.hinge(e_pos, e_neg, 1.0, reduction="none")
    assert out.shape == (2, 3)
    # Each pair is max(0, 1 + E_C - E_Ik): row 0: 0.5, 0, 2; row 1: 1, 1, 0.
    assert out.tolist() == [[0.5, 0.0, 2.0], [1.0, 1.0, 0.0]]
    assert losses.hinge(e_pos, e_neg, 1.0).item() == pytest.approx(4.5 / 6)


def test_log_loss_is_stable_for_large_gaps():
    out = losses.log_loss(torch.tensor([1000.0, -1000.0]), torch.zeros(2), reduction="none")
    assert out.tolist() == [1000.0, 0.0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: losses.hinge(torch.zeros(3), torch.zeros(4)), r"e_neg has shape \(4,\)"),
        (lambda: losses.hinge(torch.zeros(3), torch.zeros(4, 3)), r"e_neg has shape \(4, 3\)"),
        (lambda: losses.hinge(torch.zeros(3), torch.zeros(3), -1.0), "margin must be"),
        (lambda: losses.square_square(torch.zeros(3), torch.zeros(3), -0.1), "margin must be"),
        (lambda: losses.hinge(torch.zeros(3), torch.zeros(3), math.nan), "margin must be"),
        (lambda: losses.square_exp(torch.zeros(3), torch.zeros(3), 0.0), "gamma must be"),
        (lambda: losses.lvq2(torch.zeros(3), torch.zeros(3), -2.0), "saturation must be"),
        (lambda: losses.hinge(torch.zeros(3), torch.zeros(3), reduction="avg"), "reduction"),
        (lambda: losses.perceptron(torch.zeros(3), torch.zeros(2, 3)), r"e_min has shape"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="e_pos must be a torch.Tensor"):
        losses.hinge([0.0], torch.zeros(1))
    with pytest.raises(TypeError, match="e_neg must have a floating dtype"):
        losses.hinge(torch.zeros(1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(TypeError, match="expected equal dtypes"):
        losses.hinge(torch.zeros(1), torch.zeros(1, dtype=torch.float32))
    with pytest.raises(TypeError, match="margin must be a number"):
        losses.hinge(torch.zeros(1), torch.zeros(1), "1")
    with pytest.raises(TypeError, match="reduction must be a str"):
        losses.hinge(torch.zeros(1), torch.zeros(1), reduction=None)


def test_exported_from_package():
    assert eb.losses.hinge is losses.hinge
    assert "losses" in eb.__all__
