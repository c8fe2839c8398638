"""Multi-start inference: closed-form minima, every minimum, merging, domains, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ebmlab as eb
from ebmlab.energies import Banana, DoubleWell, Quadratic
from ebmlab.inference.merge import merge_minima

SOLVER_NAMES = ["adam", "gd", "hybrid", "lbfgs"]  # the gradient solvers (dfo, langevin: below)


def _solver(name: str) -> object:
    # Step sizes that are stable on the test energies (curvature <= ~10).
    return {
        "adam": eb.inference.Adam(lr=0.05),
        "gd": eb.inference.GradientDescent(lr=0.05),
        "hybrid": eb.inference.Hybrid(),
        "lbfgs": eb.inference.LBFGS(),
    }[name]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 4))
def test_quadratic_minimum_in_closed_form(seed: int, d: int):
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g)
    a = m @ m.T + 0.5 * torch.eye(d)  # positive definite, eigenvalues >= 0.5
    mu = torch.randn(d, generator=g)
    res = eb.infer(
        Quadratic(a, mu), num_starts=4, solver="lbfgs", generator=g, gtol=1e-9, max_steps=300
    )
    # The minimiser is mu; with ||grad|| <= 1e-9 and lambda_min >= 0.5 the error is <= 2e-9.
    assert res.count.tolist() == [1]
    torch.testing.assert_close(res.best[0], mu, atol=1e-7, rtol=0)
    assert bool(res.converged[0, 0])


@pytest.mark.parametrize("solver", SOLVER_NAMES)
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_double_well_finds_all_minima(solver: str, d: int, generator: torch.Generator):
    # 2^d minima at {-1, 1}^d. 24 * 2^d uniform starts on [-2, 2]^d miss a given orthant
    # with probability (1 - 2^-d)^(24 * 2^d) < e^-24: every minimum is found.
    energy = DoubleWell(d)
    res = eb.infer(
        energy,
        num_starts=24 * 2**d,
        domain=eb.Box([-2.0] * d, [2.0] * d),
        solver=_solver(solver),
        generator=generator,
        max_steps=2000,
    )
    assert res.count.tolist() == [2**d]
    found = {tuple(v) for v in res.minima(0).round().int().tolist()}
    assert found == set(itertools.product([-1, 1], repeat=d))
    torch.testing.assert_close(res.minima(0).abs(), torch.ones(2**d, d), atol=1e-3, rtol=0)
    assert bool(res.converged[res.valid].all())
    assert (res.energy[res.valid] < 1e-6).all()
    assert (res.energy[:, 1:] >= res.energy[:, :-1]).all()  # sorted ascending


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_two_branch_conditional_gives_plus_minus_sqrt_x(solver: str, generator):
    x = torch.tensor([[0.25], [1.0], [2.0], [4.0]])
    energy = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
    res = eb.infer(
        energy,
        x=x,
        num_starts=16,
        domain=eb.Box([-3.0], [3.0]),
        solver=_solver(solver) if solver != "gd" else eb.inference.GradientDescent(0.01),
        generator=generator,
        max_steps=3000,
    )
    assert res.count.tolist() == [2, 2, 2, 2]
    got = res.y[..., 0].sort(-1).values
    root = x.sqrt()
    torch.testing.assert_close(got, torch.cat([-root, root], 1), atol=2e-3, rtol=0)


def test_batch_equals_one_at_a_time(generator):
    # A random MLP energy is unbounded below: its "minima" after 100 steps are runaway points
    # whose merging depends on the batch's matmul rounding. Confined by y^2, every start
    # converges, and the converged minima must not depend on the other rows of the batch.
    mlp = eb.energies.MLPEnergy(1, x_dim=1, hidden=(16,))
    energy = eb.FunctionEnergy(lambda y, x: mlp(y, x) + (y**2).sum(-1), y_shape=(1,),
                               x_shape=(1,))
    x = torch.randn(3, 1)
    init = torch.linspace(-2, 2, 8).reshape(8, 1)
    batched = eb.infer(energy, x=x, init=init, max_steps=500)
    assert int(batched.num_unconverged.sum()) == 0
    for b in range(3):
        single = eb.infer(energy, x=x[b : b + 1], init=init, max_steps=500)
        torch.testing.assert_close(single.y[0, : single.count[0]], batched.y[b, : batched.count[b]])


def test_banana_needs_and_gets_many_steps():
    res = eb.infer(
        Banana(b=10.0),
        num_starts=8,
        solver="lbfgs",
        domain=eb.Box([-2, -1], [2, 3]),
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(res.best, torch.tensor([[1.0, 1.0]]), atol=1e-4, rtol=0)


def test_domain_projection_keeps_iterates_inside_and_finds_boundary_minimum():
    # F = (y - 3)^2 on [-1, 1]: the constrained minimum is the boundary point y = 1.
    energy = eb.FunctionEnergy(lambda y, x: ((y - 3) ** 2).sum(-1), y_shape=(1,))
    box = eb.Box([-1.0], [1.0])
    res = eb.infer(
        energy,
        num_starts=8,
        domain=box,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.count.tolist() == [1]
    torch.testing.assert_close(res.best, torch.tensor([[1.0]]))
    assert bool(res.converged[0, 0])  # the projected gradient vanishes at the boundary
    assert bool(box.contains(res.trajectory.reshape(-1, 1)).all())


def test_trajectory_shape_and_energy_never_rises_for_small_steps():
    energy = DoubleWell(2)
    res = eb.infer(
        energy,
        num_starts=5,
        solver=eb.inference.GradientDescent(lr=1e-3),
        return_trajectory=True,
        max_steps=50,
        early_stop=False,
        domain=eb.Box([-2, -2], [2, 2]),
        generator=torch.Generator().manual_seed(3),
    )
    assert res.trajectory.shape == (51, 1, 5, 2)
    e = energy(res.trajectory.reshape(-1, 2)).reshape(51, 5)
    assert (e[1:] <= e[:-1] + 1e-12).all()


def test_determinism_under_generator():
    energy = DoubleWell(3)
    box = eb.Box([-2.0] * 3, [2.0] * 3)
    runs = [
        eb.infer(energy, num_starts=16, domain=box, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].y, runs[1].y) and torch.equal(runs[0].energy, runs[1].energy)


def test_early_stop_off_runs_every_step():
    res = eb.infer(DoubleWell(1), num_starts=4, max_steps=37, early_stop=False)
    assert res.num_steps == 37


def test_unconverged_starts_are_reported():
    res = eb.infer(
        Banana(b=100.0),
        num_starts=4,
        max_steps=5,
        solver="gd",
        domain=eb.Box([-2, -1], [2, 3]),
        generator=torch.Generator().manual_seed(0),
    )
    assert int(res.num_unconverged[0]) > 0
    assert not bool(res.converged[res.valid].all())


def test_diverged_starts_are_dropped_and_reported():
    # F = -y^4 is unbounded below: every start runs off to -inf and overflows.
    energy = eb.FunctionEnergy(
        lambda y, x: torch.where(y.abs() < 1.0, (y - 0.5) ** 2, -torch.exp(y.abs() * 50)).sum(-1)
    )
    init = torch.tensor([[0.2], [0.6], [5.0], [-5.0]])
    res = eb.infer(energy, y_shape=(1,), init=init, solver=eb.inference.GradientDescent(0.1))
    assert res.num_diverged.tolist() == [2]
    assert res.count.tolist() == [1]
    torch.testing.assert_close(res.best, torch.tensor([[0.5]]), atol=1e-4, rtol=0)


def test_dtype_follows_inputs():
    energy = DoubleWell(2).float()
    res = eb.infer(energy, num_starts=4, dtype=torch.float32)
    assert res.y.dtype == torch.float32 and res.energy.dtype == torch.float32


def test_merge_keeps_no_duplicates_and_loses_no_minimum():
    # 3 true minima, each hit by several noisy end points; one end point is non-finite.
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pts = centres.repeat(4, 1) + 1e-4 * torch.randn(12, 2)
    energy = torch.tensor([0.5, 0.1, 0.3]).repeat(4) + 1e-6 * torch.rand(12)
    kept = torch.ones(12, dtype=torch.bool)
    kept[5] = False
    order, is_min, count, *_ = merge_minima(pts[None], energy[None], kept[None], tol=1e-2)
    assert count.tolist() == [3]
    reps = pts[order[0][is_min[0]]]
    torch.testing.assert_close(reps, centres[[1, 2, 0]], atol=1e-3, rtol=0)


def test_padding_layout_for_unequal_counts():
    # x = 0 has one minimum (y = 0), x = 1 has two (+-1).
    energy = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
    res = eb.infer(
        energy,
        x=torch.tensor([[0.0], [1.0]]),
        num_starts=16,
        domain=eb.Box([-2.0], [2.0]),
        generator=torch.Generator().manual_seed(0),
        merge_tol=0.05,
        max_steps=2000,
    )
    assert res.count.tolist() == [1, 2]
    assert res.valid.tolist() == [[True, False], [True, True]]
    assert torch.isinf(res.energy[0, 1]) and torch.isfinite(res.y).all()


def test_argmin_discrete_top_k_and_chunking():
    energy = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1))
    cands = torch.linspace(-5, 5, 1001).unsqueeze(-1)
    x = torch.tensor([[0.123], [-3.3], [4.0]])
    a = eb.argmin_discrete(energy, cands, x=x, top_k=3, chunk_size=64)
    b = eb.argmin_discrete(energy, cands, x=x, top_k=3, chunk_size=5000)
    assert torch.equal(a.y, b.y)
    brute = ((cands.T - x) ** 2).argsort(-1)[:, :3]
    torch.testing.assert_close(a.y[..., 0], cands[brute, 0])
    assert a.count.tolist() == [3, 3, 3]


# Bad inputs.


def test_infer_errors():
    energy = DoubleWell(2)
    with pytest.raises(TypeError, match="energy must be an ebmlab.Energy"):
        eb.infer(lambda y, x: y, y_shape=(1,))
    with pytest.raises(ValueError, match="y_shape is needed"):
        eb.infer(eb.FunctionEnergy(lambda y, x: y.sum(-1)))
    with pytest.raises(ValueError, match="num_starts must be >= 1"):
        eb.infer(energy, num_starts=0)
    with pytest.raises(ValueError, match=r"y_shape is \(3,\) but DoubleWell expects \(2,\)"):
        eb.infer(energy, y_shape=(3,))
    with pytest.raises(ValueError, match="init has shape"):
        eb.infer(energy, init=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="solver must be one of"):
        eb.infer(energy, solver="newton")
    with pytest.raises(ValueError, match="gtol must be a finite number > 0"):
        eb.infer(energy, gtol=0.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        eb.infer(energy, generator=3)
    bad = eb.FunctionEnergy(lambda y, x: y, y_shape=(2,))
    with pytest.raises(ValueError, match=r"expected \(B,\)"):
        eb.infer(bad)
    with pytest.raises(ValueError, match="every start diverged"):
        eb.infer(eb.FunctionEnergy(lambda y, x: y.sum(-1) * float("nan")), y_shape=(1,))


def _greedy_reference(pts: torch.Tensor, energy: torch.Tensor, tol: float) -> set[int]:
    # The definition, one point at a time: accept a point unless it lies within tol of an
    # accepted point of lower energy.
    accepted: list[int] = []
    for i in energy.argsort().tolist():
        if all(float((pts[i] - pts[j]).norm()) > tol for j in accepted):
            accepted.append(i)
    return set(accepted)


@pytest.mark.parametrize("block_elements", [2**22, 500])  # 500: many small blocks
@pytest.mark.parametrize("seed", range(5))
def test_merge_equals_greedy_definition(seed: int, block_elements: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 3, generator=g)
    pts = centres[torch.randint(6, (4, 50), generator=g)] + 0.05 * torch.randn(
        4, 50, 3, generator=g
    )
    energy = torch.rand(4, 50, generator=g)
    kept = torch.ones(4, 50, dtype=torch.bool)
    order, is_min, count, *_ = merge_minima(
        pts, energy, kept, tol=0.1, block_elements=block_elements
    )
    for b in range(4):
        got = set(order[b][is_min[b]].tolist())
        assert got == _greedy_reference(pts[b], energy[b], 0.1)
        assert int(count[b]) == len(got)


def test_unconverged_end_points_are_not_minima_when_others_converged():
    # Two starts at the minimum y = 0 of y^2 converge at once; one far start gets 10 steps.
    # (The median gradient norm at the starts is 0, so the tolerance falls back to absolute.)
    energy = eb.FunctionEnergy(lambda y, x: (y**2).sum(-1), y_shape=(1,))
    init = torch.tensor([[0.0], [0.0], [50.0]])
    res = eb.infer(
        energy, init=init, solver=eb.inference.GradientDescent(lr=1e-4), max_steps=10, check_every=5
    )
    assert res.count.tolist() == [1] and res.num_unconverged.tolist() == [1]
    assert bool(res.converged[0, 0])
