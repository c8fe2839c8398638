"""Chain energies against enumeration of every sequence: Viterbi, k-best, log Z, marginals, losses.

Failure budget: one χ² test (exact sampling, level 1e-4) and one training test (deterministic
under the seed, with a wide margin). Everything else is exact up to float64 rounding.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch.autograd import gradcheck

import ebmlab as eb
from ebmlab.discrete_domain import Categorical
from ebmlab.energies.chain import Chain, forward_algorithm, viterbi
from ebmlab.losses.structured import crf_nll, hamming, structured_hinge, structured_perceptron

B, L, K, D = 3, 4, 3, 5


def make_chain(seed: int = 0) -> tuple[Chain, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Linear(D, K)
    with torch.no_grad():
        net.weight.copy_(torch.randn(K, D, generator=g))
        net.bias.copy_(torch.randn(K, generator=g))
    chain = Chain(net, torch.randn(K, K, generator=g))
    return chain, torch.randn(B, L, D, generator=g)


def all_energies(chain: Chain, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sequence (K^L, L) and its energy for each input, (B, K^L)."""
    seqs = Categorical(L, K).points()
    n = seqs.shape[0]
    e = torch.stack([chain(seqs, x[b : b + 1].expand(n, L, D)) for b in range(x.shape[0])])
    return seqs, e


def test_energy_is_the_sum_of_unary_and_transition_terms():
    chain, x = make_chain()
    y = torch.tensor([[0.0, 2.0, 2.0, 1.0]]).expand(B, L)
    u = chain.unary_energies(x)
    t = chain.transitions
    expected = torch.stack([
        u[b, 0, 0] + u[b, 1, 2] + u[b, 2, 2] + u[b, 3, 1] + t[0, 2] + t[2, 2] + t[2, 1]
        for b in range(B)
    ])
    torch.testing.assert_close(chain(y, x), expected)


@pytest.mark.parametrize("top_k", [1, 4, 81, 90])
def test_k_best_viterbi_against_enumeration(top_k):
    chain, x = make_chain(1)
    seqs, e = all_energies(chain, x)
    labels, energy = chain.viterbi(x, top_k)
    k = min(top_k, seqs.shape[0])
    sorted_e, order = e.sort(1)
    torch.testing.assert_close(energy[:, :k], sorted_e[:, :k])
    assert bool(torch.isinf(energy[:, k:]).all())
    # The sequences have the energies claimed (ties between sequences are measure zero here).
    for b in range(B):
        torch.testing.assert_close(chain(labels[b, :k].double(), x[b : b + 1].expand(k, L, D)),
                                   energy[b, :k])
        assert torch.equal(labels[b, :k], seqs[order[b, :k]].long())


def test_infer_exact_returns_an_inference():
    chain, x = make_chain(2)
    res = chain.infer_exact(x, top_k=3)
    assert res.y.shape == (B, 3, L) and res.y.dtype == x.dtype
    assert bool(res.valid.all()) and res.count.tolist() == [3] * B
    torch.testing.assert_close(chain(res.best, x), res.energy[:, 0])
    tiny = Chain(torch.zeros(1, 2), torch.zeros(2, 2))
    res = tiny.infer_exact(None, top_k=5)
    assert res.count.tolist() == [2] and res.valid.tolist() == [[True, True, False, False, False]]


@pytest.mark.parametrize("beta", [0.4, 1.0, 3.0])
def test_log_partition_and_marginals_against_enumeration(beta):
    chain, x = make_chain(3)
    seqs, e = all_energies(chain, x)
    torch.testing.assert_close(chain.log_partition(x, beta), torch.logsumexp(-beta * e, 1))
    p = torch.softmax(-beta * e, 1)  # (B, K^L)
    one_hot = torch.nn.functional.one_hot(seqs.long(), K).double()  # (K^L, L, K)
    torch.testing.assert_close(chain.marginals(x, beta), torch.einsum("bn,nlk->blk", p, one_hot))
    torch.testing.assert_close(chain.log_prob(seqs[:B], x, beta),
                               (-beta * e - torch.logsumexp(-beta * e, 1, keepdim=True))
                               [torch.arange(B), torch.arange(B)])


def test_gradcheck_log_partition_and_marginals():
    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, 3, 3, generator=g, requires_grad=True)
    t = torch.randn(3, 3, generator=g, requires_grad=True)

    def log_z(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(forward_algorithm(u, t, 0.7)[:, -1], -1)

    assert gradcheck(log_z, (u, t))
    assert gradcheck(_marginals, (u, t))
    assert gradcheck(lambda u, t: crf_nll(_FixedChain(u, t), torch.tensor([[0.0, 2.0, 1.0],
                                                                           [1.0, 1.0, 0.0]])),
                     (u, t))


class _FixedChain(Chain):
    """A chain whose unary and transitions are given tensors (graph kept, for gradcheck)."""

    def __init__(self, u: torch.Tensor, t: torch.Tensor) -> None:
        super().__init__(lambda x: u, torch.zeros_like(t.detach()))
        del self.transitions
        self.transitions = t


def _marginals(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _FixedChain(u, t).marginals(None, 0.7)


def test_exact_sampling_chi_square(generator):
    chain = Chain(torch.tensor([[0.0, 0.5], [0.3, 0.0], [0.0, 1.0]]),
                  torch.tensor([[0.0, 0.8], [0.4, 0.0]]))
    seqs = Categorical(3, 2).points()
    p = torch.softmax(-chain(seqs), 0).detach()
    n = 20000
    s = chain.sample(None, n, generator=generator)[:, 0]  # (n, L)
    assert s.shape == (n, 3)
    index = (s.long() * 2 ** torch.arange(3)).sum(-1)
    counts = torch.bincount(index, minlength=8).double()
    assert stats.chisquare(counts.numpy(), (p * n).numpy()).pvalue > 1e-4


def test_structured_losses_against_brute_force():
    chain, x = make_chain(5)
    seqs, e = all_energies(chain, x)
    y = seqs[[3, 40, 77]]
    e_y = chain(y, x)
    torch.testing.assert_close(structured_perceptron(chain, y, x, reduction="none"),
                               e_y - e.min(1).values)
    for margin in (0.0, 0.5, 2.0):
        ham = torch.stack([hamming(y[b].expand_as(seqs), seqs) for b in range(B)])  # (B, K^L)
        brute = e_y - (e - margin * ham).min(1).values
        torch.testing.assert_close(structured_hinge(chain, y, x, margin=margin,
                                                    reduction="none"), brute)
    for beta in (0.5, 1.0, 2.0):
        torch.testing.assert_close(crf_nll(chain, y, x, beta=beta, reduction="none"),
                                   beta * e_y + torch.logsumexp(-beta * e, 1))
    assert bool((structured_hinge(chain, y, x, reduction="none") >= 0).all())


def test_structured_losses_train_a_chain_with_fit():
    # Labels follow a deterministic cycle 0 -> 1 -> 2 -> 0; the features carry the label only
    # half of the time (otherwise noise): transitions must learn the cycle to decode.
    g = torch.Generator().manual_seed(0)
    n, length = 400, 6
    start = torch.randint(K, (n, 1), generator=g)
    labels = (start + torch.arange(length)) % K
    informative = torch.rand(n, length, generator=g) < 0.5
    feats = torch.nn.functional.one_hot(labels, K).double() * 2.0
    feats = torch.where(informative.unsqueeze(-1), feats, torch.zeros_like(feats))
    feats = feats + 0.3 * torch.randn(n, length, K, generator=g)
    y = labels.double()
    for loss in (crf_nll, structured_hinge, structured_perceptron):
        torch.manual_seed(0)
        chain = Chain(torch.nn.Linear(K, K), torch.zeros(K, K))
        eb.fit(chain, (feats, y), loss, optimizer=torch.optim.Adam(chain.parameters(), lr=0.1),
               num_steps=150, batch_size=100, progress=False)
        decoded = chain.viterbi(feats)[0][:, 0]
        accuracy = float((decoded == labels).double().mean())
        assert accuracy > 0.95, (loss.__name__, accuracy)


def test_clear_errors():
    chain, x = make_chain()
    with pytest.raises(ValueError, match=r"labels in 0\.\.2"):
        chain(torch.full((B, L), 3.0), x)
    with pytest.raises(ValueError, match=r"labels in 0\.\.2"):
        chain(torch.full((B, L), 0.5), x)
    with pytest.raises(ValueError, match=r"expected \(B, L\) = \(B, 4\)"):
        chain(torch.zeros(B, L + 1), x)
    with pytest.raises(ValueError, match="square"):
        Chain(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="unary must be"):
        Chain("net", torch.zeros(2, 2))
    bad = Chain(lambda x: torch.zeros(x.shape[0], L, K + 1), torch.zeros(K, K))
    with pytest.raises(ValueError, match=r"unary returned \(3, 4, 4\)"):
        bad.log_partition(x)
    with pytest.raises(ValueError, match=r"labels in 0\.\.2"):
        crf_nll(chain, torch.full((B, L), -1.0), x)
    with pytest.raises(TypeError, match="linear-chain"):
        structured_hinge(eb.energies.Quadratic(torch.eye(2)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="top_k"):
        chain.viterbi(x, 0)


def test_viterbi_function_doc_example_and_batch():
    u = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]]).expand(4, 3, 2)
    labels, energy = viterbi(u, torch.zeros(2, 2), top_k=2)
    assert labels.shape == (4, 2, 3) and energy.shape == (4, 2)


def test_eb_infer_dispatches_to_viterbi():
    chain, x = make_chain(6)
    res = eb.infer(chain, x, top_k=2)
    labels, energy = chain.viterbi(x, 2)
    assert torch.equal(res.y, labels.double()) and torch.equal(res.energy, energy)
    assert res.best.shape == (B, L)


def test_argmin_discrete_over_a_categorical_domain():
    chain = Chain(torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]), torch.zeros(3, 3))
    res = eb.argmin_discrete(chain, eb.Categorical(2, 3).points(), top_k=3)
    labels, energy = chain.viterbi(None, 3)
    torch.testing.assert_close(res.energy, energy)
