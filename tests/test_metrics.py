"""eb.metrics against scikit-learn (ROC AUC, ROC curve, average precision) and hand-computed ECE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _scores(generator, n_in=300, n_out=200, shift=1.0, ties=False):
    s_in = torch.randn(n_in, generator=generator) + shift
    s_out = torch.randn(n_out, generator=generator)
    if ties:  # rounding makes many equal scores across and within the two sets
        s_in, s_out = s_in.round(decimals=1), s_out.round(decimals=1)
    return s_in, s_out


def _sk_inputs(s_in, s_out):
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    return y, np.r_[s_in.numpy(), s_out.numpy()]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shift", [0.0, 1.0, -0.5])
def test_auroc_and_aupr_match_sklearn(generator, ties, shift):
    s_in, s_out = _scores(generator, shift=shift, ties=ties)
    y, s = _sk_inputs(s_in, s_out)
    assert metrics.auroc(s_in, s_out) == pytest.approx(sklearn_metrics.roc_auc_score(y, s),
                                                       abs=1e-12)
    assert metrics.aupr(s_in, s_out) == pytest.approx(
        sklearn_metrics.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("tpr", [0.95, 0.8, 0.5, 1.0])
@pytest.mark.parametrize("n_in", [300, 100, 37])
def test_fpr_at_tpr_matches_sklearn_roc_curve(generator, ties, tpr, n_in):
    s_in, s_out = _scores(generator, n_in=n_in, ties=ties)
    y, s = _sk_inputs(s_in, s_out)
    fpr, tprs, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    expected = fpr[np.argmax(tprs >= tpr - 1e-12)]  # first ROC point reaching the TPR
    assert metrics.fpr_at_tpr(s_in, s_out, tpr) == pytest.approx(expected, abs=1e-12)


def test_auroc_extremes_and_symmetry():
    a, b = torch.arange(5.0) + 10, torch.arange(5.0)
    assert metrics.auroc(a, b) == 1.0
    assert metrics.auroc(b, a) == 0.0
    assert metrics.auroc(a, a) == 0.5
    assert metrics.fpr_at_tpr(a, b) == 0.0
    assert metrics.fpr_at_tpr(b, a) == 1.0


def test_ece_by_hand():
    # Three bins of width 1/3. Confidences 0.9, 0.8 (bin 3), 0.6, 0.5 (bin 2), 0.34 is in bin 2
    # too (> 1/3); bin 1 is empty.
    probs = torch.tensor([
        [0.9, 0.1, 0.0],   # predicts 0, label 0: right
        [0.1, 0.8, 0.1],   # predicts 1, label 2: wrong
        [0.6, 0.3, 0.1],   # predicts 0, label 0: right
        [0.25, 0.25, 0.5],  # predicts 2, label 2: right
        [0.33, 0.34, 0.33],  # predicts 1, label 0: wrong
    ])
    labels = torch.tensor([0, 2, 0, 2, 0])
    # bin 3 (2/3, 1]: acc 1/2, conf 0.85 -> |0.5 - 0.85| = 0.35, weight 2/5
    # bin 2 (1/3, 2/3]: acc 2/3, conf (0.6 + 0.5 + 0.34)/3 = 0.48 -> 0.18667, weight 3/5
    expected = 2 / 5 * 0.35 + 3 / 5 * abs(2 / 3 - 1.44 / 3)
    assert metrics.expected_calibration_error(probs, labels, num_bins=3) == pytest.approx(expected)
    table = metrics.reliability(probs, labels, num_bins=3)
    assert table["count"].tolist() == [0.0, 3.0, 2.0]
    assert math.isnan(float(table["accuracy"][0]))


def test_ece_matches_a_loop_over_bins(generator):
    logits = 3 * torch.randn(500, 10, generator=generator)
    probs = torch.softmax(logits, -1)
    labels = torch.randint(10, (500,), generator=generator)
    conf, pred = probs.max(-1)
    edges = torch.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            acc = (pred[inside] == labels[inside]).double().mean()
            ece += inside.double().mean() * (acc - conf[inside].mean()).abs()
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(float(ece))


def test_perfectly_calibrated_and_accuracy():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error(probs, torch.tensor([0, 1])) == 0.0
    assert metrics.accuracy(probs, torch.tensor([0, 0])) == 0.5
    two_of_three = metrics.accuracy(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0]))
    assert two_of_three == pytest.approx(2 / 3)


def test_scores():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(metrics.energy_score(logits), logits.logsumexp(-1))
    assert torch.allclose(metrics.energy_score(logits, temperature=2.0),
                          2 * (logits / 2).logsumexp(-1))
    assert torch.allclose(metrics.softmax_score(logits), torch.softmax(logits, -1).max(-1).values)


def test_mmd(generator):
    a = torch.randn(300, 4, generator=generator)
    b = torch.randn(300, 4, generator=generator)
    # Same law: the unbiased estimate is centred on 0 with sd ~ 1/N.
    assert abs(metrics.mmd(a, b)) < 0.02
    assert metrics.mmd(a + 1.0, b) > 0.1
    assert metrics.mmd(a.reshape(300, 2, 2), b.reshape(300, 2, 2), bandwidth=1.0) == pytest.approx(
        metrics.mmd(a, b, bandwidth=1.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.auroc(torch.zeros(2, 2), torch.zeros(3)), "1-D"),
        (lambda: metrics.auroc(torch.tensor([math.nan]), torch.zeros(3)), "non-finite"),
        (lambda: metrics.fpr_at_tpr(torch.zeros(3), torch.zeros(3), tpr=1.5), "tpr"),
        (lambda: metrics.expected_calibration_error(torch.ones(2, 2), torch.zeros(2)), "sum"),
        (lambda: metrics.expected_calibration_error(torch.eye(2), torch.tensor([0, 2])),
         "0 .. 1"),
        (lambda: metrics.expected_calibration_error(torch.eye(2), torch.tensor([0])), "shape"),
        (lambda: metrics.accuracy(torch.zeros(3), torch.zeros(2)), "shape"),
        (lambda: metrics.mmd(torch.zeros(3, 2), torch.zeros(3, 3)), "equal shapes"),
        (lambda: metrics.energy_score(torch.zeros(3)), r"\(N, C\)"),
    ],
)
def test_bad_inputs_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
