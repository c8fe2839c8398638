"""ClassifierEnergy against the network it wraps: energies, marginal, classes, errors."""

from __future__ import annotations

import pytest
import torch

from ebmlab.energies.classifier import ClassifierEnergy, InputEnergy
from ebmlab.energies.conv import ConvNet
from ebmlab.inference import argmin_discrete


@pytest.fixture
def clf():
    return ClassifierEnergy(ConvNet(1, 8, 10, widths=(4,), hidden=16))


def test_conditional_energy_is_minus_the_logit(clf):
    x = torch.rand(6, 1, 8, 8)
    logits = clf.net(x)
    labels = torch.tensor([0.0, 3.0, 9.0, 1.0, 1.0, 5.0]).unsqueeze(-1)
    e = clf(labels, x=x)
    assert e.shape == (6,)
    assert torch.equal(e, -logits[torch.arange(6), labels.squeeze(-1).long()])
    assert torch.equal(clf.energies(x), -logits)


def test_marginal_is_minus_logsumexp_and_gibbs_is_softmax(clf):
    x = torch.rand(5, 1, 8, 8)
    logits = clf.net(x)
    f = clf.marginal()
    assert isinstance(f, InputEnergy) and f.y_shape == (1, 8, 8)
    assert torch.allclose(f(x), -torch.logsumexp(logits, -1))
    # p(y|x) = exp(-E(x, y)) / exp(-F(x)): the Gibbs distribution of the label at beta = 1
    assert torch.allclose(torch.exp(-(clf.energies(x) - f(x).unsqueeze(-1))),
                          torch.softmax(logits, -1))
    assert torch.allclose(clf.predict_proba(x), torch.softmax(logits, -1))
    assert torch.allclose(clf.predict_proba(x, beta=2.0), torch.softmax(2 * logits, -1))
    # Given the label, the input energy is the conditional energy.
    labels = torch.arange(5.0)
    assert torch.equal(f(x, x=labels), clf(labels.unsqueeze(-1), x=x))
    # The marginal shares the classifier's parameters (no copy).
    assert {id(p) for p in f.parameters()} == {id(p) for p in clf.net.parameters()}


def test_class_inference_is_the_argmax(clf):
    x = torch.rand(7, 1, 8, 8)
    found = argmin_discrete(clf, clf.candidates(), x=x, top_k=3)
    logits = clf.net(x)
    assert torch.equal(found.best.squeeze(-1).long(), logits.argmax(-1))
    assert torch.equal(clf.predict(x), logits.argmax(-1))
    order = torch.argsort(-logits, dim=-1)[:, :3]
    assert torch.equal(found.y.squeeze(-1).long(), order)
    assert torch.allclose(found.energy, -logits.gather(1, order))


def test_gradients_of_the_marginal_in_the_image(clf):
    x = torch.rand(3, 1, 8, 8)
    f = clf.marginal()
    e, g = f.energy_and_grad(x)
    assert g.shape == x.shape and torch.allclose(e, f(x))
    x64 = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: f.forward(v), (x64,))


def test_num_classes_is_read_or_given():
    assert ClassifierEnergy(torch.nn.Linear(3, 4)).num_classes == 4
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh())
    assert ClassifierEnergy(net).num_classes == 5
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierEnergy(torch.nn.Tanh())
    assert ClassifierEnergy(torch.nn.Tanh(), num_classes=3, input_shape=(3,)).input_shape == (3,)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda c: c(torch.zeros(2, 1), x=torch.rand(2, 1, 8, 7)), ValueError, r"\(B, 1, 8, 8\)"),
        (lambda c: c(torch.zeros(2, 1), x=torch.rand(2, 64)), ValueError, "input_shape"),
        (lambda c: c(torch.tensor([[10.0], [0.0]]), x=torch.rand(2, 1, 8, 8)), ValueError,
         r"0 \.\. 9"),
        (lambda c: c(torch.tensor([[-1.0], [0.0]]), x=torch.rand(2, 1, 8, 8)), ValueError,
         "class labels"),
        (lambda c: c(torch.tensor([[0.5], [0.0]]), x=torch.rand(2, 1, 8, 8)), ValueError,
         "whole numbers"),
        (lambda c: c(torch.zeros(2, 1)), ValueError, "conditional"),
        (lambda c: c(torch.zeros(2, 1), x=torch.rand(3, 1, 8, 8)), ValueError, "batch sizes"),
        (lambda c: c.marginal()(torch.rand(2, 1, 8, 8), x=torch.tensor([0.0, 12.0])),
         ValueError, r"0 \.\. 9"),
        (lambda c: c.marginal()(torch.rand(2, 1, 8, 8), x=torch.zeros(2, 3)), ValueError,
         r"\(B,\) or \(B, 1\)"),
        (lambda c: c.marginal()(torch.rand(2, 8, 8)), ValueError, r"\(B, 1, 8, 8\)"),
        (lambda c: c.predict(torch.rand(2, 2, 8, 8)), ValueError, "input_shape"),
        (lambda c: ClassifierEnergy("net"), TypeError, "torch.nn.Module"),
        (lambda c: InputEnergy(c.net), TypeError, "ClassifierEnergy"),
    ],
)
def test_bad_inputs_are_refused(clf, call, error, match):
    with pytest.raises(error, match=match):
        call(clf)


def test_wrong_logits_shape_is_refused():
    clf = ClassifierEnergy(torch.nn.Linear(3, 4), num_classes=5)
    with pytest.raises(ValueError, match=r"logits \(B, C\) = \(2, 5\)"):
        clf.predict(torch.zeros(2, 3))
