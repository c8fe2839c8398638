"""Enumerate and eb.Gibbs on discrete domains against brute force: log Z, moments, χ² of samples.

Failure budget. Four χ² tests (two unconditional RBMs, two inputs of a conditional Potts
energy) compare Gibbs.sample draws with the brute-force probabilities at level 1e-4 each
(cells expecting < 5 pooled): the chance that a correct sampler fails for an unlucky seed is
below 4e-4 (Bonferroni). Everything else is exact, to
floating-point rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import ebmlab as eb
from ebmlab.energies.rbm import RBM
from ebmlab.partition import ESTIMATORS, Enumerate

LEVEL = 1e-4
DT = torch.float64


def random_rbm(v: int, h: int, seed: int) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(v, h, init_scale=1.0, generator=g).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(0.5 * torch.randn(v, generator=g, dtype=DT))
        rbm.hidden_bias.copy_(0.5 * torch.randn(h, generator=g, dtype=DT))
    return rbm


def potts(num_classes: int) -> eb.FunctionEnergy:
    """E(x, y) = sum_t (y_t - x_t)^2 / 2 - [y_0 == y_1]: couples sites, depends on x."""

    def fn(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        return 0.5 * ((y - x) ** 2).sum(-1) - (y[:, 0] == y[:, 1]).to(y.dtype)

    return eb.FunctionEnergy(fn, y_shape=(3,))


def brute_force(energy: eb.Energy, points: torch.Tensor, x: torch.Tensor | None,
                beta: float) -> torch.Tensor:
    """log P(y | x) at every point, (B, N), by one explicit evaluation of all of them."""
    rows = [None] if x is None else list(x)
    out = []
    for xb in rows:
        xs = None if xb is None else xb.expand(points.shape[0], *xb.shape)
        logits = -beta * energy(points, xs)
        out.append(logits - torch.logsumexp(logits, 0))
    return torch.stack(out).detach()


def chi_square_pvalue(samples: torch.Tensor, probs: torch.Tensor, num_classes: int) -> float:
    """p-value of the counts of ``samples`` (N, d) against ``probs`` over the enumerated set."""
    d = samples.shape[1]
    index = (samples.long() * num_classes ** torch.arange(d)).sum(-1)
    counts = torch.bincount(index, minlength=probs.numel()).double()
    expected = probs.double() * samples.shape[0]
    obs, exp, acc_o, acc_e = [], [], 0.0, 0.0
    for i in expected.argsort().tolist():  # pool the smallest cells until each expects >= 5
        acc_o, acc_e = acc_o + float(counts[i]), acc_e + float(expected[i])
        if acc_e >= 5:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0:
        obs[-1] += acc_o
        exp[-1] += acc_e
    return float(stats.chisquare(obs, exp).pvalue)


CASES = {
    # name: (energy, domain, x, beta)
    "rbm": (lambda: random_rbm(5, 3, 0).marginal(), eb.Binary(5), None, 1.0),
    "rbm_hot": (lambda: random_rbm(5, 3, 1).marginal(), eb.Binary(5), None, 0.3),
    "potts_x": (lambda: potts(3), eb.Categorical(3, 3),
                torch.tensor([[0.0, 1.0, 2.0], [2.0, 2.0, 0.5]], dtype=DT), 1.5),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunk_size", [7, 65536])
def test_log_partition_log_prob_and_moments_are_exact(name, chunk_size):
    make, domain, x, beta = CASES[name]
    energy = make()
    points = domain.points(dtype=DT)
    log_p = brute_force(energy, points, x, beta)  # (B, N)
    p = eb.Gibbs(energy, x, beta=beta, domain=domain, estimator=Enumerate(chunk_size=chunk_size))
    assert isinstance(p.estimator, Enumerate)
    est = p.log_partition()
    rows = [None] if x is None else list(x)
    expected_log_z = torch.stack([
        torch.logsumexp(-beta * energy(points, None if xb is None else xb.expand(len(points), 3)),
                        0) for xb in rows]).detach()
    if x is None:
        expected_log_z = expected_log_z[0]
    torch.testing.assert_close(est.value, expected_log_z, rtol=0, atol=1e-12)
    assert bool((est.stderr == 0).all()) and est.stderr.shape == est.value.shape
    # log_prob of every point, broadcast against the batch: (N, B) or (N,)
    lp = p.log_prob(points.unsqueeze(1) if x is not None else points)
    torch.testing.assert_close(lp, log_p.T if x is not None else log_p[0], rtol=0, atol=1e-12)
    # moments and the Shannon entropy
    probs = log_p.exp()  # (B, N)
    mean = probs @ points
    var = probs @ points**2 - mean**2
    entropy = -(probs * log_p).sum(-1)
    if x is None:
        mean, var, entropy = mean[0], var[0], entropy[0]
    torch.testing.assert_close(p.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.variance, var, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.entropy(), entropy, rtol=0, atol=1e-12)


def test_rbm_log_partition_agrees_with_its_closed_form():
    # Two independent exact computations: the sum over v (here) and over h (RBM.log_partition).
    rbm = random_rbm(6, 4, 3)
    for beta in (1.0, 0.5):
        est = Enumerate(chunk_size=5).log_partition(rbm.marginal(beta), beta=beta,
                                                    domain=eb.Binary(6))
        torch.testing.assert_close(est.value, rbm.log_partition(beta=beta).detach(), rtol=0,
                                   atol=1e-12)
        assert est.stderr.item() == 0.0 and est.ess is None


@pytest.mark.parametrize("name", sorted(CASES))
def test_samples_follow_the_enumerated_law(name, generator):
    make, domain, x, beta = CASES[name]
    energy = make()
    points = domain.points(dtype=DT)
    probs = brute_force(energy, points, x, beta).exp()
    p = eb.Gibbs(energy, x, beta=beta, domain=domain, estimator=Enumerate(chunk_size=5))
    samples = p.sample((20000,), generator=generator)  # (N, [B,] d)
    assert bool(domain.contains(samples).all())
    per_row = [samples] if x is None else list(samples.unbind(1))
    for b, s in enumerate(per_row):
        assert chi_square_pvalue(s, probs[b], domain.num_classes) > LEVEL


def test_sampling_is_reproducible_and_event_shaped():
    energy = eb.FunctionEnergy(lambda y, x: -y.flatten(1).sum(-1), y_shape=(2, 2))
    p = eb.Gibbs(energy, domain=eb.Binary((2, 2)))
    a = p.sample((5,), generator=torch.Generator().manual_seed(0))
    b = p.sample((5,), generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 2, 2) and torch.equal(a, b)
    assert p.mean.shape == (2, 2) and p.event_shape == (2, 2)
    # independent sites: P(y = 1) = e / (1 + e) each
    torch.testing.assert_close(p.mean, torch.full((2, 2), math.e / (1 + math.e)))


def test_registry_default_and_refusals():
    assert ESTIMATORS["enumerate"] is Enumerate
    energy = eb.FunctionEnergy(lambda y, x: y.sum(-1), y_shape=(4,))
    assert isinstance(eb.Gibbs(energy, domain=eb.Binary(4)).estimator, Enumerate)
    assert isinstance(eb.Gibbs(energy, domain=eb.Binary(4), estimator="enumerate").estimator,
                      Enumerate)
    with pytest.raises(ValueError, match="estimator must be 'enumerate'"):
        eb.Gibbs(energy, domain=eb.Binary(4), estimator="ais")
    with pytest.raises(ValueError, match="estimator must be 'enumerate'"):
        eb.Gibbs(energy, domain=eb.Binary(4), estimator=eb.partition.Grid())
    with pytest.raises(TypeError, match="discrete domain"):
        eb.Gibbs(energy, domain=eb.Box([0.0] * 4, [1.0] * 4), estimator="enumerate")
    with pytest.raises(ValueError, match="enumeration limit"):  # before anything is evaluated
        eb.Gibbs(eb.FunctionEnergy(lambda y, x: y.sum(-1)), domain=eb.Binary(25))
    with pytest.raises(ValueError, match="enumeration limit"):
        Enumerate().log_partition(eb.FunctionEnergy(lambda y, x: y.sum(-1)),
                                  domain=eb.Categorical(16, 3))
    with pytest.raises(ValueError, match="y_shape"):
        eb.Gibbs(energy, domain=eb.Binary(3))
    with pytest.raises(TypeError, match="discrete domain"):
        Enumerate().log_partition(energy, domain=eb.Box([0.0] * 4, [1.0] * 4))
    with pytest.raises(ValueError, match="support"):
        eb.Gibbs(energy, domain=eb.Binary(4)).log_prob(torch.full((1, 4), 0.5))


def test_non_finite_energies():
    nan = eb.FunctionEnergy(lambda y, x: torch.where(y[:, 0] > 0, torch.nan, 0.0 * y[:, 0]),
                            y_shape=(2,))
    with pytest.raises(ValueError, match="non-finite"):
        eb.Gibbs(nan, domain=eb.Binary(2)).log_partition()
    inf = eb.FunctionEnergy(lambda y, x: torch.full_like(y[:, 0], math.inf), y_shape=(2,))
    with pytest.raises(ValueError, match="not normalisable"):
        Enumerate().log_partition(inf, domain=eb.Binary(2))
    # +inf is zero probability: one point excluded
    half = eb.FunctionEnergy(lambda y, x: torch.where(y.sum(-1) == 2, math.inf, 0.0 * y[:, 0]),
                             y_shape=(2,))
    p = eb.Gibbs(half, domain=eb.Binary(2))
    assert abs(p.log_partition().value.item() - math.log(3)) < 1e-6
    assert not bool((p.sample((200,), generator=torch.Generator().manual_seed(0)).sum(-1)
                     == 2).any())
