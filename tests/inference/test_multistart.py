"""The multi-start engine and the one inference gate: starts, solvers, assembly, check_problem."""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.inference.multistart import SOLVERS, assemble, minimize, resolve_solver, starts
from ebmlab.inference.problem import Problem, check_problem
from ebmlab.inference.solver import Objective


def test_starts_take_init_shared_or_per_input_a_domain_or_gaussian(generator):
    init = torch.randn(3, 2, generator=generator)
    shared = starts(2, 3, (2,), None, init, None, torch.float64, torch.device("cpu"), 1.0)
    assert shared.shape == (6, 2)
    torch.testing.assert_close(shared[3:], init, rtol=0, atol=0)
    per_input = starts(2, 3, (2,), None, init.expand(2, 3, 2), None, torch.float64,
                       torch.device("cpu"), 1.0)
    torch.testing.assert_close(per_input, shared, rtol=0, atol=0)
    with pytest.raises(ValueError, match="init has shape"):
        starts(2, 3, (2,), None, torch.zeros(4, 2), None, torch.float64, torch.device("cpu"), 1.0)
    box = eb.Box([0.0, 1.0], [0.5, 2.0])
    inside = starts(2, 8, (2,), box, None, generator, torch.float32, torch.device("cpu"), 1.0)
    assert inside.dtype == torch.float32
    assert bool(((inside >= box.low) & (inside <= box.high)).all())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    wide = starts(1, 5, (3,), None, None, g1, torch.float64, torch.device("cpu"), 2.0)
    torch.testing.assert_close(wide, 2.0 * torch.randn(5, 3, generator=g2, dtype=torch.float64))


def test_resolve_solver_names_instances_and_errors():
    assert isinstance(resolve_solver(None), eb.inference.Hybrid)
    for name, make in SOLVERS.items():
        assert type(resolve_solver(name)) is type(make())
    solver = eb.inference.LBFGS()
    assert resolve_solver(solver) is solver
    with pytest.raises(ValueError, match="solver must be one of"):
        resolve_solver("newton")
    with pytest.raises(TypeError, match="init"):
        resolve_solver(object())


def test_minimize_and_assemble_merge_the_two_wells():
    well = eb.energies.DoubleWell(1)
    y0 = torch.linspace(-2.0, 2.0, 8).reshape(8, 1)
    run = minimize(Objective(well.energy_and_grad, None), y0, eb.inference.LBFGS(),
                   max_steps=200, gtol=1e-8, ftol=1e-14)
    assert run.y.shape == (8, 1) and bool(run.is_converged.all())
    res = assemble(run, 2, 4, (1,), 1e-3)  # two "inputs" of four starts each
    assert res.count.tolist() == [1, 1]  # the left half finds -1, the right half +1
    torch.testing.assert_close(res.best[:, 0].abs(), torch.ones(2), atol=1e-5, rtol=0)


def test_check_problem_defaults_and_the_dtype_device_rule():
    well = eb.energies.DoubleWell(2)
    p = check_problem(well, torch.zeros(3, 1, dtype=torch.float32), dtype=torch.float64)
    assert isinstance(p, Problem)
    assert (p.b, p.s, p.shape, p.merge_tol) == (3, 32, (2,), 1e-2)
    assert p.dtype == torch.float32  # x fixes the dtype; the dtype argument is for x = None
    init = torch.zeros(5, 2, dtype=torch.float32)
    p = check_problem(well, init=init)
    assert (p.b, p.s, p.dtype) == (1, 5, torch.float32)
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    p = check_problem(well, domain=box, dtype=torch.float32, solver="gd")
    assert p.merge_tol == pytest.approx(1e-3 * box.diameter) and p.dtype == torch.float32
    assert isinstance(p.solver, eb.inference.GradientDescent)
    with pytest.raises(TypeError, match="domain must be an ebmlab.Box or None"):
        check_problem(well, domain=(0, 1))
    with pytest.raises(ValueError, match="domain has shape"):
        check_problem(well, y_shape=(2,), domain=eb.Box([0.0], [1.0]))
    with pytest.raises(ValueError, match="merge_tol"):
        check_problem(well, merge_tol=0.0)


@pytest.mark.parametrize("energy", [eb.energies.DoubleWell(1), eb.energies.Ellipse()])
def test_infer_and_joint_inference_share_the_gate(energy):
    for kwargs, error, match in [
        ({"num_starts": 0}, ValueError, "num_starts must be >= 1"),
        ({"gtol": -1.0}, ValueError, "gtol must be a finite number > 0"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ({"domain": "box"}, TypeError, "domain must be an ebmlab.Box"),
        ({"max_steps": 1.5}, TypeError, "max_steps must be an int"),
    ]:
        with pytest.raises(error, match=match):
            eb.infer(energy, **kwargs)
