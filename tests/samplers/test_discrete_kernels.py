"""Discrete kernels (BlockGibbs, Gibbs, GibbsWithGradients): contract and χ² against enumeration.

Failure budget. Each χ² test compares the end states of independent chains with the
enumerated probabilities at level 1e-4 (cells with expected count < 5 are pooled); there are
8 of them in this file (Bonferroni): the chance that correct kernels fail for an unlucky seed
is below 8e-4. Everything else is deterministic.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

import ebmlab as eb
from ebmlab.discrete_domain import Binary, Categorical
from ebmlab.energies.rbm import RBM
from ebmlab.samplers.block_gibbs import BlockGibbs
from ebmlab.samplers.gibbs_sampler import Gibbs
from ebmlab.samplers.gibbs_with_gradients import GibbsWithGradients

LEVEL = 1e-4
# One configuration per discrete kernel (the discrete counterpart of test_contract's FACTORIES).
DISCRETE = {
    "block_gibbs": lambda: BlockGibbs(),
    "gibbs": lambda: Gibbs(),
    "gibbs_random": lambda: Gibbs(scan="random"),
    "gibbs_with_gradients": lambda: GibbsWithGradients(),
}


def random_rbm(v: int, h: int, seed: int, scale: float = 1.0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(v, h, init_scale=scale, generator=g)
    with torch.no_grad():
        rbm.visible_bias.copy_(0.5 * torch.randn(v, generator=g))
        rbm.hidden_bias.copy_(0.5 * torch.randn(h, generator=g))
    return rbm


def chi_square_pvalue(samples: torch.Tensor, probs: torch.Tensor, num_classes: int) -> float:
    """p-value of the counts of ``samples`` (N, d) against ``probs`` over the enumerated set."""
    d = samples.shape[1]
    index = (samples.long() * num_classes ** torch.arange(d)).sum(-1)
    counts = torch.bincount(index, minlength=probs.numel()).double()
    expected = probs.double() * samples.shape[0]
    order = expected.argsort()
    # Pool the smallest cells until every pooled cell expects >= 5.
    obs, exp, acc_o, acc_e = [], [], 0.0, 0.0
    for i in order.tolist():
        acc_o += float(counts[i])
        acc_e += float(expected[i])
        if acc_e >= 5:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0:
        obs[-1] += acc_o
        exp[-1] += acc_e
    return float(stats.chisquare(obs, exp).pvalue)


def exact_draws(probs: torch.Tensor, points: torch.Tensor, n: int,
                generator: torch.Generator) -> torch.Tensor:
    return points[torch.multinomial(probs, n, replacement=True, generator=generator)]


@pytest.mark.parametrize("name", sorted(DISCRETE))
def test_stationarity_on_an_rbm(name, generator):
    # Start 6000 chains from exact draws of P(v) and run 3 steps: an exact kernel keeps the
    # law, and independent chains give a multinomial sample for the chi-square test.
    rbm = random_rbm(4, 3, 0)
    points = Binary(4).points()
    probs = rbm.log_prob(points).exp().detach()
    y0 = exact_draws(probs, points, 6000, generator)
    energy = rbm if name == "block_gibbs" else rbm.marginal()
    chain = eb.sample(energy, y0, DISCRETE[name](), 3, generator=generator)
    assert chi_square_pvalue(chain.samples[-1], probs, 2) > LEVEL


@pytest.mark.parametrize("name", ["block_gibbs", "gibbs_with_gradients"])
def test_convergence_from_zeros_at_another_beta(name, generator):
    # From v = 0, 40 steps at beta = 0.5 reach P_beta(v) ∝ sum_h exp(-beta E(v, h)) to far
    # below the test's resolution (this small model mixes in a few steps).
    rbm = random_rbm(4, 3, 1)
    points = Binary(4).points()
    beta = 0.5
    probs = torch.softmax(-beta * rbm.free_energy(points, beta=beta), 0).detach()
    kernel = BlockGibbs(beta) if name == "block_gibbs" else GibbsWithGradients(beta)
    energy = rbm if name == "block_gibbs" else rbm.marginal(beta)
    chain = eb.sample(energy, torch.zeros(5000, 4), kernel, 40, generator=generator)
    assert chi_square_pvalue(chain.samples[-1], probs, 2) > LEVEL


@pytest.mark.parametrize("scan", ["systematic", "random"])
def test_gibbs_on_a_categorical_conditional_energy(scan, generator):
    # A Potts-like chain over {0, 1, 2}^3 with an x-dependent field: Gibbs is exact for it.
    def fn(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        same = (y[:, 1:] == y[:, :-1]).double().sum(-1)
        return -0.7 * same + ((y - x) ** 2).sum(-1) * 0.3

    energy = eb.FunctionEnergy(fn, y_shape=(3,))
    points = Categorical(3, 3).points()
    x_value = torch.tensor([0.0, 1.0, 2.0])
    probs = torch.softmax(-energy(points, x_value.expand(27, 3)), 0)
    n = 6000
    x = x_value.expand(n, 3)
    y0 = exact_draws(probs, points, n, generator)
    chain = eb.sample(energy, y0, Gibbs(3, scan=scan), 3, x, generator=generator)
    assert chi_square_pvalue(chain.samples[-1], probs, 3) > LEVEL
    assert bool(((chain.samples >= 0) & (chain.samples <= 2)).all())


def test_chain_energies_are_cached_correctly():
    rbm = random_rbm(6, 3, 2)
    free = rbm.marginal()
    g = torch.Generator().manual_seed(0)
    for name, make in DISCRETE.items():
        energy = rbm if name == "block_gibbs" else free
        chain = eb.sample(energy, torch.zeros(7, 6), make(), 5, burn_in=2, thin=1, generator=g)
        assert chain.samples.shape == (5, 7, 6), name
        torch.testing.assert_close(chain.energy, free.forward(chain.samples.flatten(0, 1))
                                   .reshape(5, 7))
        assert bool(((chain.samples == 0) | (chain.samples == 1)).all())
        for field in ("acceptance_rate", "is_accepted", "is_divergent"):
            assert getattr(chain.info, field).shape == (5, 7)
        assert chain.info.is_accepted.dtype == torch.bool
        assert not chain.samples.requires_grad and not chain.energy.requires_grad
        summary = chain.summary()
        assert 0.0 <= summary["acceptance_rate"] <= 1.0 and summary["num_divergent"] == 0


@pytest.mark.parametrize("name", sorted(DISCRETE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_and_determinism(name, dtype):
    rbm = random_rbm(5, 3, 3).to(dtype)
    energy = rbm if name == "block_gibbs" else rbm.marginal()
    y0 = torch.zeros(4, 5, dtype=dtype)
    runs = [eb.sample(energy, y0, DISCRETE[name](), 6, generator=torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]
    assert runs[0].samples.dtype == dtype and runs[0].energy.dtype == dtype
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert not torch.equal(runs[0].samples, runs[2].samples)


def test_gibbs_with_gradients_on_a_large_binary_model(generator):
    # 400 binary sites: one energy and gradient per step, and the chains move.
    rbm = random_rbm(400, 20, 4, scale=0.05)
    chain = eb.sample(rbm.marginal(), torch.zeros(8, 400), GibbsWithGradients(), 50,
                      generator=generator)
    assert chain.samples.shape == (50, 8, 400)
    assert float(chain.info.is_accepted.double().mean()) > 0.3
    assert float(chain.samples[-1].sum()) > 0


def test_block_gibbs_gives_persistent_cd_with_the_replay_buffer(generator):
    # PCD: Sampled negatives from a buffer of persistent chains, advanced by BlockGibbs.
    from ebmlab.training.negatives import Sampled

    rbm = random_rbm(6, 3, 5)
    domain = Binary(6)
    buffer = eb.training.ReplayBuffer(32, lambda n, g: domain.sample(n, generator=g),
                                      y_shape=(6,), reinit_fraction=0.0)
    negatives = Sampled(num_steps=1, init="buffer", sampler=BlockGibbs(), buffer=buffer)
    y = domain.sample(8, generator=generator)
    out = negatives(rbm.marginal(), y, generator=generator)
    assert out.shape == (8, 6) and bool(((out == 0) | (out == 1)).all())


def test_errors():
    rbm = RBM(4, 2)
    with pytest.raises(TypeError, match="bipartite"):
        BlockGibbs().init(torch.zeros(2, 4), eb.energies.Quadratic(torch.eye(4)))
    with pytest.raises(ValueError, match=r"\(chains, 4\)"):
        BlockGibbs().init(torch.zeros(2, 5), rbm)
    with pytest.raises(ValueError, match="beta"):
        BlockGibbs(beta=0.0)
    with pytest.raises(ValueError, match="scan"):
        Gibbs(scan="diagonal")
    with pytest.raises(ValueError, match="num_classes"):
        Gibbs(1)
    with pytest.raises(ValueError, match=r"values in 0\.\.1"):
        Gibbs().init(torch.full((2, 4), 0.5), rbm)
    with pytest.raises(ValueError, match="binary"):
        GibbsWithGradients().init(torch.full((2, 4), 2.0), rbm)
    with pytest.raises(TypeError, match="eb.Energy"):
        Gibbs().init(torch.zeros(2, 4), lambda y, x: y.sum(-1))


def test_every_discrete_kernel_is_registered():
    assert set(eb.samplers.DISCRETE_KERNELS) == {"block_gibbs", "gibbs", "gibbs_with_gradients"}
    assert eb.samplers.BlockGibbs is BlockGibbs and eb.samplers.Gibbs is Gibbs
    assert {type(make()) for make in DISCRETE.values()} == set(
        eb.samplers.DISCRETE_KERNELS.values())
