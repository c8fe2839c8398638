"""Inference you can trust (issue 11): convergence with defaults, only minima, basin merge,
coverage estimates, the warning, batch mixing, DFO, annealed Langevin and unroll."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab.energies import DoubleWell, Quadratic


def _quadratic(d: int, kappa: float, seed: int) -> tuple[Quadratic, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.logspace(0, math.log10(kappa), d, dtype=torch.float64)
    a = (q * lam) @ q.T
    mu = torch.rand(d, generator=g, dtype=torch.float64) * 2 - 1
    return Quadratic(a, mean=mu), mu, lam


@pytest.mark.parametrize(("d", "kappa"), [(2, 1e4), (4, 24.0), (10, 1e2), (10, 1e4), (50, 1e4)])
def test_quadratics_of_every_condition_number_converge_with_defaults(d: int, kappa: float):
    energy, mu, lam = _quadratic(d, kappa, seed=d)
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.InferenceWarning)  # converged: silent
        res = eb.infer(energy, num_starts=16, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [1] and bool(res.converged.all())
    # Converged means |grad| = |A (y - mu)| <= gtol * g_scale, with g_scale the median
    # gradient norm at the starts, at most lam_max * max |y0 - mu|; so
    # |y - mu| <= gtol * g_scale / lam_min.
    y0 = 1.0 * torch.randn(16, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bound = 1e-5 * float(lam[-1]) * float((y0 - mu).norm(dim=-1).max()) / float(lam[0])
    assert float((res.best[0] - mu).norm()) <= bound
    assert res.hits.tolist() == [[16]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_50d_quadratics_of_condition_1e4_converge_from_every_start_in_a_box(seed: int):
    # Starts uniform in [-3, 3]^50, far up the walls (F ~ 1e5): with L-BFGS (10 pairs) as the
    # polish ~40 % of them ended unconverged within the default budget.
    d = 50
    energy, mu, lam = _quadratic(d, 1e4, seed=100 + seed)
    box = eb.Box(torch.full((d,), -3.0, dtype=torch.float64), torch.full((d,), 3.0,
                                                                         dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.InferenceWarning)
        res = eb.infer(energy, num_starts=48, domain=box,
                       generator=torch.Generator().manual_seed(seed))
    assert res.count.tolist() == [1] and int(res.num_unconverged[0]) == 0
    assert res.hits.tolist() == [[48]] and res.num_steps < 500
    # |y - mu| <= |A (y - mu)| / lam_min, and converged means a projected gradient of at most
    # gtol * g_scale, g_scale at most the box's width 6 sqrt(d) (a projected gradient).
    bound = 1e-5 * 6 * math.sqrt(d) / float(lam[0])
    assert float((res.best[0] - mu).norm()) <= bound


def test_hybrid_polishes_small_problems_with_dense_bfgs_and_large_ones_with_lbfgs():
    hybrid = eb.inference.Hybrid()
    assert hybrid.is_dense(256, 50) and not hybrid.is_dense(256, 65)
    assert not hybrid.is_dense(2**16, 64)  # N D^2 over dense_max_elements
    assert not eb.inference.Hybrid(dense_max_dim=0).is_dense(1, 1)
    y = torch.zeros(3, 4)
    assert "h" in hybrid.init(y, y[:, 0], y) and "s" in eb.inference.Hybrid(
        dense_max_dim=2).init(y, y[:, 0], y)


def test_bfgs_as_an_explicit_solver_and_its_arguments():
    from ebmlab.inference.lbfgs import BFGS

    energy, mu, lam = _quadratic(20, 1e4, seed=7)
    y0 = torch.randn(8, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for solver in (BFGS(), BFGS(refine=0)):
        res = eb.infer(energy, init=y0, solver=solver, max_steps=1000)
        assert res.count.tolist() == [1] and bool(res.converged.all())
        # As above: |y - mu| <= gtol * g_scale / lam_min, g_scale <= lam_max max |y0 - mu|.
        bound = 1e-5 * float(lam[-1]) * float((y0 - mu).norm(dim=-1).max()) / float(lam[0])
        assert float((res.best[0] - mu).norm()) <= bound
    with pytest.raises(ValueError, match="refine"):
        BFGS(refine=-1)
    with pytest.raises(ValueError, match="max_step"):
        BFGS(max_step=0.0)


def test_rosenbrock_and_double_wells_converge_with_defaults():
    rosen = eb.FunctionEnergy(
        lambda y, x: (100 * (y[:, 1:] - y[:, :-1] ** 2) ** 2 + (1 - y[:, :-1]) ** 2).sum(-1),
        y_shape=(2,),
    )
    res = eb.infer(rosen, num_starts=16, domain=eb.Box([-2.0, -1.0], [2.0, 3.0]),
                   dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [1]
    torch.testing.assert_close(res.best[0], torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)
    for d in (2, 4):
        res = eb.infer(DoubleWell(d), num_starts=24 * 2**d, domain=eb.Box([-2.0] * d, [2.0] * d),
                       generator=torch.Generator().manual_seed(1))
        assert res.count.tolist() == [2**d]
        assert res.hits.sum().item() == 24 * 2**d - int(res.num_unconverged[0])


def test_rosenbrock_5d_both_minima_with_defaults():
    # 5-D Rosenbrock has the global minimum at 1 and one local minimum near (-0.96, 0.94, ...).
    rosen = eb.FunctionEnergy(
        lambda y, x: (100 * (y[:, 1:] - y[:, :-1] ** 2) ** 2 + (1 - y[:, :-1]) ** 2).sum(-1),
        y_shape=(5,),
    )
    box = eb.Box([-2.0] * 5, [2.0] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.InferenceWarning)
        res = eb.infer(rosen, num_starts=96, domain=box, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [2] and int(res.num_unconverged[0]) == 0
    torch.testing.assert_close(res.best[0], torch.ones(5, dtype=torch.float64), atol=1e-4,
                               rtol=0)
    assert float(res.y[0, 1, 0]) < -0.9


def test_saddles_and_maxima_are_never_reported_even_from_starts_on_them():
    # DoubleWell(2): minima (+-1, +-1), saddles (+-1, 0), (0, +-1), maximum (0, 0). A 5 x 5
    # grid puts starts exactly on all of them (zero gradient) and on their stable manifolds.
    lin = torch.linspace(-2.0, 2.0, 5)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2)
    for solver in (None, "lbfgs", "gd", "adam"):
        res = eb.infer(DoubleWell(2), init=grid, domain=eb.Box([-2.0] * 2, [2.0] * 2),
                       solver=solver, max_steps=2000)
        found = {tuple(v) for v in res.minima(0).round().int().tolist()}
        assert found == set(itertools.product([-1, 1], repeat=2)), solver
        assert int(res.hits.sum()) == 25 - int(res.num_unconverged[0])


def test_flat_and_anisotropic_basins_merge_and_barriers_keep_close_points_apart():
    # A flat-bottomed basin: F = max(|y| - 0.3, 0)^2 is 0 on the ball of radius 0.3.
    flat = eb.FunctionEnergy(lambda y, x: (y.norm(dim=-1) - 0.3).clamp_min(0) ** 2, y_shape=(2,))
    res = eb.infer(flat, num_starts=64, domain=eb.Box([-1.0] * 2, [1.0] * 2), merge_tol=0.05,
                   generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [1]
    # Anisotropic: kappa = 1e4 in float32 leaves the end points spread along the weak axis.
    energy, mu, _ = _quadratic(2, 1e4, seed=3)
    res = eb.infer(energy.float(), num_starts=64, domain=eb.Box([-3.0] * 2, [3.0] * 2),
                   generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [1]
    # Two wells 0.004 apart (closer than merge_tol = 0.01) with a barrier of height 1.
    w = 0.002
    wells = eb.FunctionEnergy(lambda y, x: ((y[:, 0] ** 2 - w**2) / w**2) ** 2 + y[:, 1] ** 2,
                              y_shape=(2,))
    res = eb.infer(wells, init=torch.tensor([[-0.003, 0.1], [0.003, -0.1]], dtype=torch.float64),
                   merge_tol=0.01, solver="lbfgs")
    assert res.count.tolist() == [2]
    torch.testing.assert_close(res.y[0, :, 0].sort().values,
                               torch.tensor([-w, w], dtype=torch.float64), atol=1e-6, rtol=0)


def test_hits_and_estimated_count_on_a_64_minimum_landscape():
    # DoubleWell(6): 64 minima; 2048 starts cover them (each hit ~32 times).
    res = eb.infer(DoubleWell(6), num_starts=2048, domain=eb.Box([-2.0] * 6, [2.0] * 6),
                   generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [64]
    assert int(res.hits.sum()) == 2048 - int(res.num_unconverged[0]) - int(res.num_diverged[0])
    assert abs(float(res.estimated_count[0]) - 64) <= 0.3 * 64
    assert float(res.unseen_probability[0]) < 0.01
    # Few starts: the estimate exceeds what was found and stays within 30 % of the truth.
    few = eb.infer(DoubleWell(6), num_starts=160, domain=eb.Box([-2.0] * 6, [2.0] * 6),
                   generator=torch.Generator().manual_seed(0))
    assert int(few.count[0]) < 64
    assert float(few.estimated_count[0]) >= int(few.count[0])
    assert abs(float(few.estimated_count[0]) - 64) <= 0.3 * 64


def test_auto_starts_find_every_minimum_of_a_few_hundred():
    # DoubleWell(8): 256 minima.
    res = eb.infer(DoubleWell(8), num_starts="auto", domain=eb.Box([-2.0] * 8, [2.0] * 8),
                   generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [256]
    assert float(res.unseen_probability[0]) < 0.01
    assert int(res.hits.sum()) <= 65536


def test_auto_starts_per_input_and_max_starts():
    f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
    res = eb.infer(f, x=torch.tensor([[0.0], [1.0]]), num_starts="auto", max_starts=64,
                   domain=eb.Box([-2.0], [2.0]), generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [1, 2]
    with pytest.raises(ValueError, match="num_starts must be an int >= 1 or 'auto'"):
        eb.infer(f, x=torch.zeros(1, 1), num_starts="many")
    with pytest.raises(ValueError, match="coverage must be in"):
        eb.infer(f, x=torch.zeros(1, 1), num_starts="auto", coverage=1.0)


def test_warning_when_and_only_when_unconverged_minima_are_reported():
    energy, _, _ = _quadratic(4, 1e3, seed=0)
    with pytest.warns(eb.InferenceWarning, match="1 of 1 inputs report minima from unconverged"):
        res = eb.infer(energy, num_starts=8, max_steps=3, solver="gd")
    assert not bool(res.converged[res.valid].any())
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.InferenceWarning)
        eb.infer(energy, num_starts=8, dtype=torch.float64)


def test_consecutive_energy_test_rejects_two_cycles():
    # GD at an unstable step bounces between box faces (a 2-cycle of equal energies): no
    # box corner may come back as a converged minimum.
    box = eb.Box([-2.0, -2.0], [2.0, 2.0])
    with pytest.warns(eb.InferenceWarning):
        res = eb.infer(DoubleWell(2, scale=1e4), num_starts=16, domain=box, solver="gd",
                       generator=torch.Generator().manual_seed(0))
    assert not bool(res.converged.any()) and res.num_unconverged.tolist() == [16]


def test_tiny_and_huge_energy_scales_give_the_same_answer():
    box = eb.Box([-2.0, -2.0], [2.0, 2.0])
    for scale in (1e-8, 1.0, 1e8):
        res = eb.infer(DoubleWell(2, scale=scale), num_starts=64, domain=box,
                       generator=torch.Generator().manual_seed(0))
        assert res.count.tolist() == [4], scale


def test_batch_mixing_energy_is_refused_and_scalar_x_accepted():
    f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
    with pytest.raises(ValueError, match="mixes the batch"):
        eb.infer(f, x=torch.tensor([4.0, 1.0]), num_starts=8)  # x (B,): y - x is (B, B)
    res = eb.infer(f, x=torch.tensor([[4.0], [1.0]]), num_starts=16,
                   generator=torch.Generator().manual_seed(0))
    assert res.count.tolist() == [2, 2]
    g = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,), x_shape=(1,))
    with pytest.raises(ValueError, match=r"x has shape \(2,\).*x.unsqueeze"):
        g(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="x has shape"):
        eb.infer(g, x=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="x is empty"):
        eb.infer(f, x=torch.zeros(0, 1))


def test_init_is_detached_and_never_cast():
    init = torch.randn(8, 2, dtype=torch.float32, requires_grad=True)
    res = eb.infer(DoubleWell(2).float(), init=init)
    assert not res.y.requires_grad and res.y.dtype == torch.float32
    with pytest.raises(ValueError, match="init has dtype torch.float64"):
        eb.infer(DoubleWell(2).float(), init=init.detach().double(), dtype=torch.float32)


def test_merge_memory_stays_linear_in_the_number_of_points():
    # 4,000 distinct points (every end point its own minimum, as after max_steps=1): the
    # blocked merge compares blocks with the representatives, never S x S; the RSS check at
    # 65,536 starts is test_merge_peak_memory_in_a_fresh_process (slow).
    from ebmlab.inference.merge import merge_minima

    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 4000, 3, generator=g) * 100
    m = merge_minima(pts, torch.rand(2, 4000, generator=g),
                     torch.ones(2, 4000, dtype=torch.bool), 1e-3, block_elements=2**16)
    assert m.count.tolist() == [4000, 4000]
    assert bool((m.label == torch.arange(4000)).all())


def test_dfo_finds_the_zero_region_of_a_piecewise_constant_energy():
    target = torch.tensor([0.4, -0.2])
    step = eb.FunctionEnergy(
        lambda y, x: ((y - target).abs() > 0.05).any(-1).to(y.dtype) + 0.0 * y.sum(-1),
        y_shape=(2,),
    )
    res = eb.infer(step, domain=eb.Box([-1.0] * 2, [1.0] * 2), num_starts=512,
                   solver=eb.inference.DFO(generator=torch.Generator().manual_seed(0)),
                   generator=torch.Generator().manual_seed(0))
    assert float(res.energy[0, 0]) == 0.0
    assert bool(((res.best[0] - target).abs() <= 0.05).all())
    assert isinstance(eb.inference.SOLVERS["dfo"](), eb.inference.DFO)


def test_annealed_langevin_crosses_the_small_barriers_of_a_rugged_well():
    # A wide parabola with ripples: 1-D, minima near every integer; the global one at 0.
    rugged = eb.FunctionEnergy(lambda y, x: (0.05 * y**2 - 0.3 * torch.cos(2 * math.pi * y))
                               .sum(-1), y_shape=(1,))
    box = eb.Box([-6.0], [6.0])
    plain = eb.infer(rugged, num_starts=64, domain=box, max_steps=1500,
                     solver=eb.inference.GradientDescent(0.01),
                     generator=torch.Generator().manual_seed(0))
    hot = eb.infer(rugged, num_starts=64, domain=box, max_steps=2500,
                   solver=eb.inference.AnnealedLangevin(lr=0.01, temperature=0.6,
                                                        anneal_steps=2000,
                                                        generator=torch.Generator().manual_seed(0)),
                   generator=torch.Generator().manual_seed(0))
    share = float(hot.hits[0, 0]) / float(hot.hits[0].sum())
    assert abs(float(hot.best[0, 0])) < 1e-3
    assert share > 2 * float(plain.hits[0, 0]) / float(plain.hits[0].sum())


def test_unroll_matches_the_closed_form_of_gradient_descent_on_a_quadratic():
    torch.set_default_dtype(torch.float64)
    d, k, eta = 3, 5, 0.1
    g = torch.Generator().manual_seed(0)
    m = torch.randn(d, d, generator=g)
    a = (m @ m.T + torch.eye(d)).requires_grad_(True)
    f = eb.FunctionEnergy(lambda y, x: 0.5 * ((y - x) @ a * (y - x)).sum(-1))
    y0 = torch.randn(4, d, generator=g, requires_grad=True)
    x = torch.randn(4, d, generator=g)
    y = eb.inference.unroll(f, y0, x, num_steps=k, step_size=eta)
    # y_K - x = (I - eta A)^K (y0 - x)
    p = torch.linalg.matrix_power(torch.eye(d) - eta * a, k)
    torch.testing.assert_close(y, x + (y0 - x) @ p.T)
    # d y_K / d y0 = (I - eta A)^K per row; zero across rows.
    jac = torch.autograd.functional.jacobian(
        lambda v: eb.inference.unroll(f, v, x, num_steps=k, step_size=eta), y0.detach()
    )  # (4, d, 4, d)
    for b, c in itertools.product(range(4), repeat=2):
        want = p.detach() if b == c else torch.zeros(d, d)
        torch.testing.assert_close(jac[b, :, c, :], want)
    # The graph reaches the energy's parameters: d sum(y_K)/dA matches the autograd of the
    # closed form.
    (ga,) = torch.autograd.grad(y.sum(), a)
    sym = 0.5 * (a + a.T)  # the gradient of the energy is sym (y - x)
    (gb,) = torch.autograd.grad((x + (y0 - x) @ torch.linalg.matrix_power(
        torch.eye(d) - eta * sym, k).T).sum(), a)
    torch.testing.assert_close(ga, gb)
    with pytest.raises(ValueError, match="solver must be one of"):
        eb.inference.unroll(f, y0, x, num_steps=1, step_size=0.1, solver="adam")
