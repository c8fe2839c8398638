"""FreeEnergy: brute-force agreement, limits, closed forms, streaming, gradients, errors."""

import math

import pytest
import torch
from torch import nn

import ebmlab as eb


class RandomLatent(eb.LatentEnergy):
    """A small random smooth E(x, y, z) with no ``pairwise``: exercises the generic path."""

    def __init__(self, y_dim=2, z_dim=2, x_dim=1, hidden=8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(y_dim + z_dim + x_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        self.y_shape, self.z_shape = (y_dim,), (z_dim,)

    def forward(self, y, z, x=None):
        return 3 * self.net(torch.cat([y, z, x], -1)).squeeze(-1) + (y**2).sum(-1)


def brute_force(energy, y, x, z, log_w, beta):
    """The naive (B, N) matrix and torch.logsumexp."""
    b, n = y.shape[0], z.shape[0]
    yy = y.repeat_interleave(n, 0)
    xx = x.repeat_interleave(n, 0)
    zz = z.repeat(b, 1)
    e = energy(yy, zz, xx).reshape(b, n)
    if math.isinf(beta):
        return e.min(1).values
    return -torch.logsumexp(log_w - beta * e, 1) / beta


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 7.0, 100.0, math.inf])
@pytest.mark.parametrize("reduction", ["mean", "integral"])
def test_matches_brute_force_logsumexp(seed, beta, reduction):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    energy = RandomLatent()
    z = torch.randn(37, 2, generator=gen)
    weights = torch.rand(37, generator=gen) + 0.1
    latent = eb.latent.Discrete(z, weights=weights)
    y, x = torch.randn(5, 2, generator=gen), torch.randn(5, 1, generator=gen)
    free = eb.FreeEnergy(energy, latent, beta=beta, reduction=reduction, chunk_size=4)
    log_w = weights.log() if reduction == "integral" else torch.full((37,), -math.log(37))
    with torch.no_grad():
        expected = brute_force(energy, y, x, z, log_w, beta)
        torch.testing.assert_close(free(y, x=x), expected, rtol=1e-12, atol=1e-12)
    f, _ = free.energy_and_grad(y, x)
    torch.testing.assert_close(f, expected, rtol=1e-12, atol=1e-12)


def test_streaming_equals_unchunked(generator):
    ellipse = eb.energies.Ellipse()
    grid = eb.latent.Grid(0.0, 2 * math.pi, 300, periodic=True)
    y = 4 * torch.rand(16, 2, generator=generator) - 2
    for beta in (0.5, 20.0, math.inf):
        whole = eb.FreeEnergy(ellipse, grid, beta=beta, chunk_size=300)
        parts = eb.FreeEnergy(ellipse, grid, beta=beta, chunk_size=37)
        with torch.no_grad():
            torch.testing.assert_close(parts(y), whole(y), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(parts.energy_and_grad(y)[1], whole.energy_and_grad(y)[1])


def test_limits_min_and_mean(generator):
    energy = RandomLatent()
    z = torch.randn(50, 2, generator=generator)
    latent = eb.latent.Discrete(z)
    y, x = torch.randn(6, 2, generator=generator), torch.randn(6, 1, generator=generator)
    e = torch.stack([energy(y, z[k].expand(6, 2), x) for k in range(50)], 1).detach()
    with torch.no_grad():
        # β → ∞: min ≤ F_β ≤ min + log(N)/β under the mean convention.
        big = eb.FreeEnergy(energy, latent, beta=1e6)(y, x=x)
        assert ((big - e.min(1).values) >= -1e-12).all()
        assert ((big - e.min(1).values) <= math.log(50) / 1e6 + 1e-12).all()
        inf = eb.FreeEnergy(energy, latent)(y, x=x)
        torch.testing.assert_close(inf, e.min(1).values)
        # β → 0: F_β = mean − β Var/2 + O(β²); at β = 1e-6 the gap is below Var·β.
        small = eb.FreeEnergy(energy, latent, beta=1e-6)(y, x=x)
        gap = (small - e.mean(1)).abs()
        assert (gap <= e.var(1, unbiased=False) * 1e-6 + 1e-9).all()


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_gaussian_latent_closed_form_integral(beta, generator):
    # E = ½‖y − Wz‖² + ½‖z‖², z ∈ ℝ²: with A = WᵀW + I and b = Wᵀy,
    # ∫ e^{−βE} dz = (2π/β) det(A)^{-1/2} exp(−β/2 (yᵀy − bᵀA⁻¹b)).
    w = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -0.4]])

    class GaussianLatent(eb.LatentEnergy):
        y_shape, z_shape = (3,), (2,)

        def forward(self, y, z, x=None):
            return 0.5 * ((y - z @ w.T) ** 2).sum(-1) + 0.5 * (z**2).sum(-1)

    y = torch.randn(4, 3, generator=generator)
    a = w.T @ w + torch.eye(2)
    b = y @ w
    quad = (y**2).sum(-1) - (b @ torch.linalg.inv(a) * b).sum(-1)
    log_z = math.log(2 * math.pi / beta) - 0.5 * torch.logdet(a) - 0.5 * beta * quad
    expected = -log_z / beta
    # z has sd ≤ 1/√(β λmin(A)) ≤ 1.03 about A⁻¹b (|A⁻¹b| < 3 here): ±16 is beyond 12 sd; the
    # trapezoid rule with step h on a Gaussian of sd s errs by ~2 exp(−2π² s²/h²) (Poisson
    # summation): at the narrowest s = 1/√(4 λmax(A)) ≈ 0.33 and h = 0.2, below 1e-20.
    grid = eb.latent.Grid([-16.0, -16.0], [16.0, 16.0], 161)
    free = eb.FreeEnergy(GaussianLatent(), grid, beta=beta, reduction="integral")
    torch.testing.assert_close(free(y), expected, rtol=1e-9, atol=1e-9)


def test_mean_and_integral_differ_by_log_size_over_beta():
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    y = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    beta = 2.5
    mean = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=beta)
    integral = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=beta, reduction="integral")
    with torch.no_grad():
        # weights 2π/48 vs 1/48: F_mean − F_integral = (1/β) log(2π)
        diff = mean(y) - integral(y)
    torch.testing.assert_close(diff, torch.full((2,), math.log(2 * math.pi) / beta))


@pytest.mark.parametrize("beta", [0.7, 5.0, math.inf])
def test_gradcheck_y_x_and_parameters(beta, generator):
    energy = RandomLatent(z_dim=1, hidden=3)
    grid = eb.latent.Grid(-2.0, 2.0, 13)
    free = eb.FreeEnergy(energy, grid, beta=beta, chunk_size=6)
    y = torch.randn(2, 2, generator=generator, requires_grad=True)
    x = torch.randn(2, 1, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, x: free(y, x=x), (y, x))
    names = [f"latent_energy.{n}" for n, _ in energy.named_parameters()]

    def of_params(*ps):
        # torch.func swaps the parameters for ``ps``: gradients must reach them through F.
        return torch.func.functional_call(
            free, dict(zip(names, ps, strict=True)), (y.detach(),), {"x": x.detach()}
        )

    ps = tuple(p.detach().clone().requires_grad_(True) for p in energy.parameters())
    assert torch.autograd.gradcheck(of_params, ps)


def test_parameter_gradient_matches_unstreamed_autograd(generator):
    ellipse = eb.energies.Ellipse(w=(1.3, 0.7))
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    y = eb.data.ellipse(24, generator=generator)
    beta = 3.0
    free = eb.FreeEnergy(ellipse, grid, beta=beta, chunk_size=5)
    free(y).mean().backward()
    streamed = ellipse.w.grad.clone()
    ellipse.w.grad = None
    z = grid.points()
    e = ellipse.pairwise(y, z)
    (-(torch.logsumexp(-beta * e, 1) - math.log(48)) / beta).mean().backward()
    torch.testing.assert_close(streamed, ellipse.w.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [0.4, 3.0, math.inf])
def test_energy_and_grad_matches_autograd(beta, generator):
    horn = eb.energies.Horn()
    grid = eb.latent.Grid(0.0, 2 * math.pi, 40, periodic=True)
    free = eb.FreeEnergy(horn, grid, beta=beta, chunk_size=9)
    x, y = eb.data.horn(10, generator=generator)
    y = y.requires_grad_(True)
    f = free(y, x=x)
    (g,) = torch.autograd.grad(f.sum(), y)
    e2, g2 = free.energy_and_grad(y.detach(), x)
    torch.testing.assert_close(e2, f.detach())
    torch.testing.assert_close(g2, g)


def test_responsibilities_and_argmin(generator):
    ellipse = eb.energies.Ellipse()
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    z = grid.points()
    y = ellipse.decode(z[[0, 5, 30]]).detach()
    free = eb.FreeEnergy(ellipse, grid)
    torch.testing.assert_close(free.argmin_z(y), z[[0, 5, 30]])
    r = free.responsibilities(y)
    assert r.shape == (3, 48) and torch.equal(r.argmax(1), torch.tensor([0, 5, 30]))
    assert torch.equal(r.sum(1), torch.ones(3))
    soft = eb.FreeEnergy(ellipse, grid, beta=2.0, chunk_size=10)
    r = soft.responsibilities(y)
    expected = torch.softmax(-2.0 * ellipse.pairwise(y, z), 1).detach()
    torch.testing.assert_close(r, expected)
    # the gradient of F_β is the responsibility-weighted mean of ∂E/∂y = 2(y − decode(z))
    _, g = soft.energy_and_grad(y)
    d = ellipse.decode(z).detach()
    torch.testing.assert_close(g, (r.unsqueeze(-1) * 2 * (y.unsqueeze(1) - d)).sum(1))


def test_default_pairwise_is_forward_on_the_expanded_pairs(generator):
    energy = RandomLatent()
    y, z = torch.randn(3, 2, generator=generator), torch.randn(4, 2, generator=generator)
    x = torch.randn(3, 1, generator=generator)
    e = energy.pairwise(y, z, x)
    assert e.shape == (3, 4)
    torch.testing.assert_close(e[1, 2], energy(y[1:2], z[2:3], x[1:2])[0], rtol=0, atol=0)
    ellipse = eb.energies.Ellipse()  # overrides pairwise with a closed form
    zs = torch.randn(5, 1, generator=generator)
    torch.testing.assert_close(
        ellipse.pairwise(y, zs), eb.LatentEnergy.pairwise(ellipse, y, zs), atol=1e-12, rtol=0
    )


def test_infer_on_a_free_energy_finds_the_ellipse(generator):
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    free = eb.FreeEnergy(eb.energies.Ellipse(), grid)
    res = eb.infer(free, num_starts=16, generator=generator, solver="gd", max_steps=300)
    assert res.count[0] >= 1
    # every minimum of F_∞ is a grid point of the ellipse, where F = 0; descent stops when
    # the gradient 2(y − d) is below gtol = 1e-5 or F stalls, within 1e-2 of the point.
    assert (res.energy[res.valid] < 1e-4).all()


def test_bad_beta_and_reduction():
    grid = eb.latent.Grid(0.0, 1.0, 4)
    for beta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=beta)
    with pytest.raises(ValueError, match="reduction"):
        eb.FreeEnergy(eb.energies.Ellipse(), grid, reduction="sum")
    with pytest.raises(ValueError, match="beta = inf"):
        eb.FreeEnergy(eb.energies.Ellipse(), eb.latent.Minimize((1,)), beta=1.0)
    with pytest.raises(TypeError, match="latent must be"):
        eb.FreeEnergy(eb.energies.Ellipse(), [0.0, 1.0])
    with pytest.raises(TypeError, match="LatentEnergy"):
        eb.FreeEnergy(eb.energies.DoubleWell(2), grid)


def test_latent_set_whose_shape_the_energy_rejects():
    # declared z_shape: refused at construction
    with pytest.raises(ValueError, match=r"z_shape \(2,\)"):
        eb.FreeEnergy(eb.energies.Ellipse(), eb.latent.Grid([0.0, 0.0], [1.0, 1.0], 3))

    class Undeclared(eb.LatentEnergy):
        def forward(self, y, z, x=None):
            return ((y - z @ torch.ones(1, 2)) ** 2).sum(-1)

    free = eb.FreeEnergy(Undeclared(), eb.latent.Grid([0.0, 0.0], [1.0, 1.0], 3), beta=1.0)
    with pytest.raises(ValueError, match=r"rejected z of shape \(C, 2\)"):
        free(torch.zeros(2, 2))


def test_non_finite_energies_name_the_offending_y():
    class Holey(eb.LatentEnergy):
        y_shape, z_shape = (1,), (1,)

        def forward(self, y, z, x=None):
            e = ((y - z) ** 2).sum(-1)
            return torch.where(y[:, 0] > 5, torch.full_like(e, float("nan")), e)

    y = torch.tensor([[0.0], [1.0], [7.5]])
    for beta in (1.0, math.inf):
        free = eb.FreeEnergy(Holey(), eb.latent.Grid(0.0, 1.0, 5), beta=beta)
        with pytest.raises(ValueError, match=r"non-finite energies .* y\[2\] = \[7.5\]"):
            free(y)
        with pytest.raises(ValueError, match=r"y\[2\]"):
            free.argmin_z(y)
    # the hot loop reports instead of raising: F is non-finite there
    f, _ = free.energy_and_grad(y)
    assert torch.isfinite(f[:2]).all() and not torch.isfinite(f[2])


def test_bad_y_shape():
    free = eb.FreeEnergy(eb.energies.Ellipse(), eb.latent.Grid(0.0, 1.0, 4))
    with pytest.raises(ValueError, match="expects"):
        free(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="batch sizes differ"):
        free.argmin_z(torch.zeros(3, 2), torch.zeros(2, 1))


@pytest.mark.parametrize("chunk_size", [None, 6])
def test_second_derivatives_through_the_streamed_free_energy(chunk_size, generator):
    # score matching and Langevin-style losses differentiate ∇_y F again
    grid = eb.latent.Grid(0.0, 2 * math.pi, 20, periodic=True)
    free = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=2.0, chunk_size=chunk_size)
    y = torch.randn(3, 2, generator=generator, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda y: free(y), (y,))
