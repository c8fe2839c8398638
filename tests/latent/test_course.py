"""The course's ellipse and horn: energies, data generators, and training by the energy loss."""

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.demo.latent import _horn_floor, train_energy_loss

SIGMA = 1 / 20


def test_ellipse_energy_closed_form_gradients_and_pairwise(generator):
    ellipse = eb.energies.Ellipse(w=(2.0, 1.5))
    y = torch.randn(7, 2, generator=generator)
    z = 7 * torch.rand(7, 1, generator=generator)
    e, gy, gz = ellipse.energy_and_grad(y, z)
    e2, gy2, gz2 = eb.LatentEnergy.energy_and_grad(ellipse, y, z)
    torch.testing.assert_close(e, e2)
    torch.testing.assert_close(gy, gy2)
    torch.testing.assert_close(gz, gz2)
    zs = torch.rand(5, 1, generator=generator)
    pair = ellipse.pairwise(y, zs)
    expanded = ellipse(y.repeat_interleave(5, 0), zs.repeat(7, 1)).reshape(7, 5)
    torch.testing.assert_close(pair, expanded)
    w = ellipse.w.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: ((y - w * torch.cat([z.cos(), z.sin()], -1)) ** 2)
                                    .sum(-1), (w,))
    with pytest.raises(ValueError, match="unconditional"):
        ellipse(y, z, x=torch.zeros(7, 1))
    with pytest.raises(ValueError, match=r"w must have shape \(2,\)"):
        eb.energies.Ellipse(w=(1.0, 2.0, 3.0))


def test_horn_energy_pairwise_decode_and_errors(generator):
    horn = eb.energies.Horn()
    assert [m.out_features for m in horn.f if hasattr(m, "out_features")] == [8, 8, 2]
    x, y = eb.data.horn(6, generator=generator)
    zs = torch.rand(4, 1, generator=generator)
    pair = horn.pairwise(y, zs, x)
    expanded = horn(y.repeat_interleave(4, 0), zs.repeat(6, 1), x=x.repeat_interleave(4, 0))
    torch.testing.assert_close(pair, expanded.reshape(6, 4))
    z = zs[:1].expand(6, 1)
    torch.testing.assert_close(horn(horn.decode(z, x), z, x=x), torch.zeros(6))
    with pytest.raises(ValueError, match="x is required"):
        horn(y, z)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1\)"):
        horn(y, z, x=torch.zeros(6, 2))
    # gradients reach every parameter of f through the free energy
    free = eb.FreeEnergy(horn, eb.latent.Grid(0.0, 2 * math.pi, 12, periodic=True), beta=2.0)
    free(y, x=x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in horn.parameters())


def test_ellipse_data_moments(generator):
    n = 20000
    y = eb.data.ellipse(n, generator=generator)
    assert y.shape == (n, 2)
    # y_i = r_i cos/sin θ + ε: E y_i = 0, E y_i² = r_i²/2 + σ²,
    # E y_i⁴ = 3r_i⁴/8 + 6 (r_i²/2) σ² + 3σ⁴.
    # Sample means lie within 5 sd/√n of the truth (two-sided failure rate ≈ 6e-7 each).
    for i, r in enumerate((2.0, 1.5)):
        m2 = r**2 / 2 + SIGMA**2
        m4 = 3 * r**4 / 8 + 3 * r**2 * SIGMA**2 + 3 * SIGMA**4
        assert abs(float(y[:, i].mean())) < 5 * math.sqrt(m2 / n)
        assert abs(float((y[:, i] ** 2).mean()) - m2) < 5 * math.sqrt((m4 - m2**2) / n)
    # uncorrelated: E[y1 y2] = r1 r2 E[cos θ sin θ] = 0, with
    # Var(y1 y2) = r1² r2² / 8 + σ² (r1² + r2²) / 2 + σ⁴
    var = 4 * 2.25 / 8 + SIGMA**2 * 6.25 / 2 + SIGMA**4
    assert abs(float((y[:, 0] * y[:, 1]).mean())) < 5 * math.sqrt(var / n)
    # the default is the course's 24 points, reproducible from a generator
    a = eb.data.ellipse(generator=torch.Generator().manual_seed(5))
    b = eb.data.ellipse(generator=torch.Generator().manual_seed(5))
    assert a.shape == (24, 2) and torch.equal(a, b)


def test_horn_data_follows_its_formula(generator):
    n = 20000
    x, y = eb.data.horn(n, generator=generator)
    assert x.shape == (n, 1) and y.shape == (n, 2)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    # x ~ U(0, 1): mean 1/2 with sd 1/√12 per draw
    assert abs(float(x.mean()) - 0.5) < 5 / math.sqrt(12 * n)
    # (y1/ρ1)² + (y2/ρ2)² = 1 + 2(ε1 c/ρ1 + ε2 s/ρ2) + (ε1/ρ1)² + (ε2/ρ2)²: its mean is
    # 1 + σ² E[1/ρ1² + 1/ρ2²]; the sample sd of the terms gives the tolerance (5 sd/√n).
    rho = eb.data.horn_radii(x)
    q = ((y / rho) ** 2).sum(-1)
    expected = 1 + SIGMA**2 * float((1 / rho**2).sum(-1).mean())
    assert abs(float(q.mean()) - expected) < 5 * float(q.std()) / math.sqrt(n)
    # the angle is uniform: the mean of y/ρ vanishes
    u = y / rho
    assert (u.mean(0).abs() < 5 * u.std(0) / math.sqrt(n)).all()
    torch.testing.assert_close(eb.data.horn_radii(torch.tensor([[0.0], [1.0]])),
                               torch.tensor([[2.0, 1.5], [1.5 * math.e**2, 2.0 * math.e**2]]))
    with pytest.raises(ValueError, match="num"):
        eb.data.horn(0)
    with pytest.raises(ValueError, match="noise"):
        eb.data.ellipse(10, noise=-1.0)


def _ellipse_tolerance(n, beta, w=(2.0, 1.5), h=math.pi / 24):
    """Derived tolerance on the semi-axes fitted by the energy loss to n points.

    Given ž, each w_i is a least-squares fit, ŵ_i = Σ y_i g_i(ž) / Σ g_i(ž)², whose residual
    is ε plus the grid's snapping error w_i (g(θ) − g(ž)), |θ − ž| ≲ h/2 uniform: variance
    σ² + (max w · h)²/12, and Σ g_i² ≈ n/2, so sd = √(σ² + (max w h)²/12) / √(n/2) (4 sd).
    Snapping biases ŵ by at most w (1 − cos(h/2)). At finite β the soft assignment adds
    (1/2β) log ∂²E/∂z² to F, whose gradient in w shrinks ŵ_i by ≈ 1/(β (w₁ + w₂)) (Laplace).
    """
    sd = math.sqrt(SIGMA**2 + (max(w) * h) ** 2 / 12) / math.sqrt(n / 2)
    bias = max(w) * (1 - math.cos(h / 2))
    if math.isfinite(beta):
        bias += 1 / (beta * sum(w))
    return 4 * sd + bias


@pytest.mark.parametrize("beta", [math.inf, 10.0])
def test_trained_ellipse_recovers_w(beta, generator):
    n = 240
    y = eb.data.ellipse(n, generator=generator)
    model = eb.energies.Ellipse(w=(1.0, 1.0))
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    losses = train_energy_loss(eb.FreeEnergy(model, grid, beta=beta), y, num_steps=300)
    assert losses[-1] < losses[0]
    error = (model.w.detach() - torch.tensor([2.0, 1.5])).abs()
    assert (error < _ellipse_tolerance(n, beta)).all(), (model.w.tolist(), beta)


@pytest.mark.slow
def test_trained_horn_reaches_its_noise_floor(generator):
    x, y = eb.data.horn(512, generator=generator)
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    # The floor: mean F_∞ on the data of the generating model f = ρ on the same z grid (noise
    # plus grid snapping); a ReLU f can only approach it.
    floor = _horn_floor(x, y, grid)
    horn = eb.energies.Horn()
    free = eb.FreeEnergy(horn, grid)
    losses = train_energy_loss(free, y, x, num_steps=300, lr=1.0, optimizer="lbfgs")
    with torch.no_grad():
        final = float(free(y, x=x).mean())
    assert losses[0] > 100 * floor
    assert final < 1.15 * floor, (final, floor)
