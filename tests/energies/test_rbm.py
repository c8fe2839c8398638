"""RBMs against brute-force enumeration: energy, free energy, log Z, conditionals, PLL, AIS.

Failure budget: the three Monte Carlo tests (AIS and importance sampling of log Z, the
stochastic pseudo-likelihood) are two-sided z-tests at z = 4.5 (p = 6.8e-6 each, with the
delta-method stderr estimated from >= 400 weights, i.e. to a few per cent): below 3e-5 for
the file under a correct implementation. Everything else is exact (float64 rounding only).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

import ebmlab as eb
from ebmlab.discrete_domain import Binary as BinaryDomain
from ebmlab.energies.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.energies.rbm import RBM
from ebmlab.latent import FreeEnergy
from ebmlab.latent.discrete_sets import Binary, Categorical


def random_rbm(v: int, h: int, seed: int, scale: float = 1.0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(v, h, init_scale=scale, generator=g)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.randn(v, generator=g))
        rbm.hidden_bias.copy_(torch.randn(h, generator=g))
    return rbm


def joint_energies(rbm: RBM) -> torch.Tensor:
    """(2^V, 2^H) energies of every (v, h), by the defining formula."""
    vs = BinaryDomain(rbm.num_visible).points()
    hs = BinaryDomain(rbm.num_hidden).points()
    b, c, w = rbm.visible_bias, rbm.hidden_bias, rbm.weight
    return -(vs @ b)[:, None] - (hs @ c)[None, :] - vs @ w @ hs.T


def test_energy_matches_the_formula_and_pairwise():
    rbm = random_rbm(4, 3, 0)
    vs, hs = BinaryDomain(4).points(), BinaryDomain(3).points()
    table = joint_energies(rbm)
    for j in range(hs.shape[0]):
        torch.testing.assert_close(rbm(vs, hs[j].expand(16, 3)), table[:, j])
    torch.testing.assert_close(rbm.pairwise(vs, hs), table)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("sizes", [(4, 3), (3, 5)])
def test_free_energy_and_log_partition_by_enumeration(beta, sizes):
    rbm = random_rbm(*sizes, seed=1)
    table = joint_energies(rbm)
    vs = BinaryDomain(sizes[0]).points()
    torch.testing.assert_close(rbm.free_energy(vs, beta=beta),
                               -torch.logsumexp(-beta * table, 1) / beta)
    torch.testing.assert_close(rbm.log_partition(beta=beta),
                               torch.logsumexp(-beta * table.flatten(), 0))
    # Chunking changes nothing (chunks of 3 states).
    torch.testing.assert_close(rbm.log_partition(beta=beta, chunk_size=3),
                               rbm.log_partition(beta=beta))


def test_log_prob_is_normalised_and_conditionals_are_exact():
    rbm = random_rbm(4, 3, 2)
    vs, hs = BinaryDomain(4).points(), BinaryDomain(3).points()
    torch.testing.assert_close(rbm.log_prob(vs).exp().sum(), torch.tensor(1.0))
    joint = torch.softmax(-joint_energies(rbm).flatten(), 0).reshape(16, 8)
    p_h_given_v = joint / joint.sum(1, keepdim=True)  # (16, 8)
    torch.testing.assert_close(rbm.hidden_probability(vs), p_h_given_v @ hs)
    p_v_given_h = joint / joint.sum(0, keepdim=True)
    torch.testing.assert_close(rbm.visible_probability(hs), p_v_given_h.T @ vs)


def test_free_energy_over_latent_binary_is_the_closed_form():
    rbm = random_rbm(5, 4, 3)
    v = BinaryDomain(5).points()[::3]
    for beta in (0.5, 1.0, 3.0):
        free = FreeEnergy(rbm, Binary(4), beta=beta, reduction="integral")
        torch.testing.assert_close(free(v), rbm.free_energy(v, beta=beta))
        mean = FreeEnergy(rbm, Binary(4), beta=beta)  # mean convention: + log(2^4) / beta
        torch.testing.assert_close(mean(v), rbm.free_energy(v, beta=beta) + 4 * math.log(2) / beta)
    # and at beta = inf the minimum over h
    hard = FreeEnergy(rbm, Binary(4))
    torch.testing.assert_close(hard(v), rbm.pairwise(v, BinaryDomain(4).points()).min(1).values)


def test_categorical_latent_set():
    z = Categorical(3, 4)
    assert z.size == 64 and z.z_shape == (3,)
    pts = z.points()
    assert pts.shape == (64, 3) and len({tuple(p) for p in pts.tolist()}) == 64
    assert float(pts.min()) == 0 and float(pts.max()) == 3
    torch.testing.assert_close(z.log_weights("integral"), torch.zeros(64))


def test_marginal_energy_and_closed_form_gradient():
    rbm = random_rbm(6, 4, 4)
    free = rbm.marginal()
    v = torch.rand(5, 6, generator=torch.Generator().manual_seed(0))
    e, g = free.energy_and_grad(v)
    vv = v.clone().requires_grad_(True)
    (g_auto,) = torch.autograd.grad(free.forward(vv).sum(), vv)
    torch.testing.assert_close(e, rbm.free_energy(v))
    torch.testing.assert_close(g, g_auto)
    gb = GaussianBernoulliRBM(3, 4, sigma=torch.tensor([0.5, 1.0, 2.0]), init_scale=0.5,
                              generator=torch.Generator().manual_seed(1))
    free = gb.marginal(beta=2.0)
    y = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    e, g = free.energy_and_grad(y)
    yy = y.clone().requires_grad_(True)
    (g_auto,) = torch.autograd.grad(free.forward(yy).sum(), yy)
    torch.testing.assert_close(g, g_auto)


class _LogPartition(torch.nn.Module):
    def __init__(self, rbm: torch.nn.Module) -> None:
        super().__init__()
        self.rbm = rbm

    def forward(self) -> torch.Tensor:
        return self.rbm.log_partition()


@pytest.mark.parametrize("model", ["binary", "gaussian"])
def test_gradcheck_free_energy_and_log_partition(model):
    if model == "binary":
        rbm = random_rbm(3, 2, 5)
        v = torch.tensor([[1.0, 0.0, 1.0], [0.2, 0.7, 0.0]])
    else:
        rbm = GaussianBernoulliRBM(3, 2, sigma=torch.tensor([0.5, 1.0, 2.0]), init_scale=0.5,
                                   generator=torch.Generator().manual_seed(5))
        v = torch.tensor([[1.0, -0.5, 2.0], [0.2, 0.7, 0.0]])
    names = ("weight", "visible_bias", "hidden_bias")
    start = tuple(getattr(rbm, n).detach().clone().requires_grad_(True) for n in names)

    def free(*params: torch.Tensor) -> torch.Tensor:
        state = {f"rbm.{n}": p for n, p in zip(names, params, strict=True)}
        return torch.func.functional_call(rbm.marginal(beta=0.7), state, (v,))

    def log_z(*params: torch.Tensor) -> torch.Tensor:
        state = {f"rbm.{n}": p for n, p in zip(names, params, strict=True)}
        return torch.func.functional_call(_LogPartition(rbm), state, ())

    assert gradcheck(free, start)
    assert gradcheck(log_z, start)


def test_gaussian_bernoulli_log_partition_by_quadrature():
    gb = GaussianBernoulliRBM(2, 3, sigma=torch.tensor([0.5, 2.0]), init_scale=0.5,
                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gb.visible_bias.copy_(torch.tensor([0.3, -0.4]))
        gb.hidden_bias.copy_(torch.tensor([0.2, -0.1, 0.5]))
    # Midpoint rule on [-15, 15]^2, 1200^2 cells: the density is smooth and its tails beyond
    # 15 are below e^-20 (sigma <= 2 and |mean| < 3), so the error is far under 1e-6.
    n, half = 1200, 15.0
    h = 2 * half / n
    axis = -half + h * (torch.arange(n) + 0.5)
    grid = torch.cartesian_prod(axis, axis)
    for beta in (1.0, 2.0):
        numeric = torch.logsumexp(-beta * gb.marginal(beta)(grid), 0) + 2 * math.log(h)
        torch.testing.assert_close(gb.log_partition(beta=beta), numeric, atol=1e-6, rtol=0)
        torch.testing.assert_close(gb.log_prob(grid).exp().sum() * h * h, torch.tensor(1.0))


def test_pseudo_log_likelihood_by_enumeration(generator):
    rbm = random_rbm(4, 3, 6)
    vs = BinaryDomain(4).points()
    p = rbm.log_prob(vs).exp()
    # log P(v_i | v_-i) from the enumerated joint: p(v) / (p(v) + p(v with i flipped)).
    index = (vs * torch.tensor([1.0, 2.0, 4.0, 8.0])).sum(-1).long()
    terms = torch.stack([torch.log(p[index] / (p[index] + p[index ^ (1 << i)]))
                         for i in range(4)], 1).detach()  # (16, V)
    torch.testing.assert_close(rbm.pseudo_log_likelihood(vs), terms.sum(1))
    # scikit-learn's estimate V * log P(v_i | v_-i), i uniform, is unbiased for it; its sd is
    # V * sd_i(terms); the mean of N draws is within 4.5 sd / sqrt(N) (p = 6.8e-6).
    n = 20000
    random = rbm.pseudo_log_likelihood(vs[5].expand(n, 4), sites="random", generator=generator)
    sd = 4 * float(terms[5].std(unbiased=False))
    assert abs(float(random.mean()) - float(terms[5].sum())) < 4.5 * sd / math.sqrt(n)
    with pytest.raises(ValueError, match="sites"):
        rbm.pseudo_log_likelihood(vs, sites="some")


@pytest.mark.parametrize("method, kwargs", [
    ("ais", {"num_chains": 400, "num_temperatures": 300}),
    ("importance", {"num_chains": 4000}),
])
def test_log_partition_estimates_within_their_stderr(method, kwargs, generator):
    rbm = random_rbm(8, 5, 7, scale=0.5)
    exact = float(rbm.log_partition())
    est = rbm.estimate_log_partition(method, generator=generator, **kwargs)
    assert abs(float(est.value) - exact) < 4.5 * float(est.stderr), (est, exact)


def test_clear_errors():
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match="binary"):
        rbm.log_prob(torch.full((2, 4), 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rbm.free_energy(torch.full((2, 4), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rbm.marginal()(torch.full((2, 4), -1.0))
    with pytest.raises(ValueError, match="binary"):
        rbm(torch.ones(2, 4), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"num_visible\) = \(B, 4\)"):
        rbm.free_energy(torch.ones(2, 5))
    with pytest.raises(ValueError, match="2\\^25 hidden states exceed"):
        RBM(30, 25).log_partition()
    with pytest.raises(ValueError, match="enumeration limit|limit"):
        Binary(21)
    with pytest.raises(ValueError, match="num_hidden"):
        RBM(3, 0)
    with pytest.raises(ValueError, match="method"):
        rbm.estimate_log_partition("exact")
    with pytest.raises(ValueError, match="sigma"):
        GaussianBernoulliRBM(2, 2, sigma=0.0)


def test_contrastive_gradient_is_the_autograd_gradient():
    rbm = random_rbm(6, 4, 8)
    g = torch.Generator().manual_seed(0)
    v_data, v_model = torch.rand(5, 6, generator=g), (torch.rand(5, 6, generator=g) < 0.5).double()
    free = rbm.marginal()
    loss = free.forward(v_data).mean() - free.forward(v_model).mean()
    expected = torch.autograd.grad(loss, [rbm.weight, rbm.visible_bias, rbm.hidden_bias])
    rbm.contrastive_gradient(v_data, v_model)
    for p, e in zip((rbm.weight, rbm.visible_bias, rbm.hidden_bias), expected, strict=True):
        torch.testing.assert_close(p.grad, e)


def _kernel_pcd(rbm, data, lr, epochs, batch, generator):
    """The step-by-step loop fit_pcd fuses: BlockGibbs, contrastive_gradient, SGD."""
    kernel = eb.samplers.BlockGibbs()
    state = kernel.init(torch.zeros(batch, rbm.num_visible, dtype=data.dtype), rbm)
    optimizer = torch.optim.SGD(rbm.parameters(), lr=lr)
    for _ in range(epochs):
        for v in data[: data.shape[0] // batch * batch].split(batch):
            state, _ = kernel.step(state, rbm, generator=generator)
            rbm.contrastive_gradient(v, state.position, state.hidden_input)
            optimizer.step()


def test_fit_pcd_is_the_kernel_loop_fused():
    # Same draws, same updates up to rounding (the fused sums are grouped differently): a
    # rounding difference could flip a Bernoulli draw only if a uniform fell within ~1e-15
    # of its probability, which these 2 x 23 steps do not meet.
    g = torch.Generator().manual_seed(5)
    data = torch.rand(235, 7, generator=g, dtype=torch.float64)
    data[:100] = (data[:100] < 0.4).double()  # binary rows and grey levels
    fused, looped = random_rbm(7, 5, 9).double(), random_rbm(7, 5, 9).double()
    seen = []
    times = fused.fit_pcd(data, learning_rate=0.1, num_epochs=2, batch_size=10,
                          generator=torch.Generator().manual_seed(1),
                          on_epoch=lambda e, s: seen.append((e, fused.weight.clone())))
    _kernel_pcd(looped, data, 0.1, 2, 10, torch.Generator().manual_seed(1))
    for a, b in zip(fused.parameters(), looped.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert len(times) == 2 and [e for e, _ in seen] == [1, 2]
    assert not torch.equal(seen[0][1], seen[1][1])  # parameters written back every epoch
    assert fused.weight.grad is None


def test_fit_pcd_learns_and_refuses_bad_arguments():
    g = torch.Generator().manual_seed(0)
    proto = (torch.rand(2, 8, generator=g) < 0.5).double()
    data = proto[torch.randint(2, (400,), generator=g)]
    rbm = RBM(8, 4, generator=g).double()
    before = float(rbm.pseudo_log_likelihood(data).mean())
    rbm.fit_pcd(data, learning_rate=0.1, num_epochs=5, generator=g)
    assert float(rbm.pseudo_log_likelihood(data).mean()) > before + 1.0
    with pytest.raises(ValueError, match="learning_rate"):
        rbm.fit_pcd(data, learning_rate=0.0)
    with pytest.raises(ValueError, match="batch_size=500 is larger"):
        rbm.fit_pcd(data, batch_size=500)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rbm.fit_pcd(2 * data)
    with pytest.raises(ValueError, match="num_visible"):
        rbm.fit_pcd(data[:, :5])
    with pytest.raises(ValueError, match="num_epochs"):
        rbm.fit_pcd(data, num_epochs=0)
