"""compile= on eb.infer: the argument check, the eager fallback, agreement with eager."""

from __future__ import annotations

import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab import _compile
from ebmlab.inference.compiled_loop import minimize_compiled, solver_block
from ebmlab.inference.minimization import minimize
from ebmlab.inference.solver import Objective


def _problem() -> tuple[eb.Energy, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    energy = eb.energies.MLPEnergy(2, x_dim=1, hidden=(8,)).requires_grad_(False)
    x = torch.randn(3, 1)
    y0 = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1))
    return energy, x, y0


def test_compile_argument_is_checked() -> None:
    energy, x, y0 = _problem()
    with pytest.raises(ValueError, match="compile must be False, True"):
        eb.infer(energy, x=x, init=y0, compile="fast")


@pytest.mark.parametrize("early_stop", [True, False])
def test_frozen_loop_equals_minimize(early_stop: bool) -> None:
    # The compiled loop's bookkeeping (frozen rows, one shape) run with an eager block: the
    # same end points, flags and step count as the shrinking eager loop, bit for bit.
    q = eb.energies.Quadratic(torch.diag(torch.tensor([1.0, 30.0])), mean=[1.0, -1.0])
    y0 = torch.randn(12, 2, generator=torch.Generator().manual_seed(2)) * 3
    y0[::4] = torch.tensor([1.0, -1.0])  # these converge at the first check, the others later
    kwargs = dict(max_steps=57, gtol=1e-6, ftol=1e-12, check_every=5, is_early_stop=early_stop,
                  is_trajectory=True, groups=4)
    solver = eb.inference.GradientDescent(lr=0.03)
    ref = minimize(Objective(q.energy_and_grad, None), y0, solver, **kwargs)
    got = minimize_compiled(Objective(q.energy_and_grad, None), y0, solver, block=solver_block,
                            **kwargs)
    assert ref.num_steps == got.num_steps
    for name in ("y", "energy", "is_converged", "is_diverged", "trajectory", "gscale"):
        assert torch.equal(getattr(ref, name), getattr(got, name)), name
    if early_stop:
        assert bool(got.is_converged.any()) and not bool(got.is_converged.all())


def test_fallback_warns_once_and_matches_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(fn: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(_compile, "_torch_compile", no_compiler)
    energy, x, y0 = _problem()
    kw = dict(x=x, init=y0, solver="adam", max_steps=60, check_every=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.InferenceWarning)
        eager = eb.infer(energy, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = eb.infer(energy, compile=True, **kw)
    fallback = [w for w in caught if "could not compile" in str(w.message)]
    assert len(fallback) == 1
    assert "inference solver steps" in str(fallback[0].message)
    assert "no C++ compiler found" in str(fallback[0].message)
    assert torch.equal(eager.count, got.count)
    # The fallback runs the same steps eagerly, with the gradient by torch.func.grad.
    torch.testing.assert_close(got.y, eager.y, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.energy, eager.energy, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_compiled_infer_equals_eager() -> None:
    # One real compilation (a 2-step gradient-descent block on a tiny MLP, ~20-60 s on CPU).
    energy, x, y0 = _problem()
    kw = dict(x=x, init=y0, solver=eb.inference.GradientDescent(lr=0.1), max_steps=40,
              check_every=2, gtol=1e-4, ftol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.InferenceWarning)
        eager = eb.infer(energy, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no fallback: really compiled
            warnings.simplefilter("ignore", eb.InferenceWarning)
            got = eb.infer(energy, compile=True, **kw)
    assert torch.equal(eager.count, got.count)
    # Float64: the compiler's reordering changes the last bits only.
    torch.testing.assert_close(got.y, eager.y, rtol=0, atol=1e-8)
    torch.testing.assert_close(got.energy, eager.energy, rtol=0, atol=1e-8)
    assert eager.num_steps == got.num_steps


def test_nothing_to_compile_warns() -> None:
    well = eb.energies.DoubleWell(1)

    def run(**kw: object) -> eb.Inference:
        torch.manual_seed(0)  # DFO's own draws use the global stream
        return eb.infer(well, num_starts=16, solver="dfo", domain=eb.Box([-2.0], [2.0]),
                        generator=torch.Generator().manual_seed(0), **kw)

    with pytest.warns(UserWarning, match="nothing to compile \\(the derivative-free solver"):
        got = run(compile=True)
    assert torch.equal(got.y, run().y)


@pytest.mark.parametrize("adam_steps", [20, 25])
def test_hybrid_phases_compile_once_each_and_equal_minimize(adam_steps: int) -> None:
    # Hybrid's phase counter never enters a block (it would recompile at every block, then
    # again at the switch); the blocks are Adam's and the polish's; a block across the switch
    # (adam_steps=25, blocks of 10) runs eagerly. Same numbers as the eager loop, bit for bit.
    q = eb.energies.Quadratic(torch.diag(torch.tensor([1.0, 30.0])), mean=[1.0, -1.0])
    y0 = torch.randn(12, 2, generator=torch.Generator().manual_seed(2)) * 3
    kwargs = dict(max_steps=60, gtol=1e-9, ftol=1e-14, check_every=10, is_early_stop=False)
    solver = eb.inference.Hybrid(adam_steps=adam_steps)
    seen = []

    def block(phase: object, *args: object) -> object:
        seen.append((type(phase).__name__, getattr(phase, "solver", None), "phase_t" in args[6]))
        return solver_block(phase, *args)

    ref = minimize(Objective(q.energy_and_grad, None), y0, solver, **kwargs)
    got = minimize_compiled(Objective(q.energy_and_grad, None), y0, solver, block=block,
                            **kwargs)
    assert torch.equal(ref.y, got.y) and torch.equal(ref.energy, got.energy)
    assert all(name == "HybridPhase" and not has_t for name, _, has_t in seen)
    assert [s for _, s, _ in seen].count(solver.adam) == 2
    assert len({id(s) for _, s, _ in seen}) == 2  # one Adam phase, one polish phase
    assert len(seen) == (6 if adam_steps == 20 else 5)  # the block across 25 ran eagerly


@pytest.mark.parametrize("hidden", [(16, 8), ()])
@pytest.mark.parametrize("x_dim", [0, 3])
def test_mlp_traced_formulation_matches_eager(x_dim: int, hidden: tuple[int, ...]) -> None:
    # What torch.compile traces of MLPEnergy.energy_and_grad (the first layer split into its
    # y and x columns, biases subtracted negated): the eager values to float rounding.
    torch._dynamo.reset()  # the error case below leaves the frame to eager execution
    torch.manual_seed(0)
    energy = eb.energies.MLPEnergy(2, x_dim=x_dim, hidden=hidden)  # (): one linear layer
    y = torch.randn(64, 2, dtype=torch.float64)
    x = torch.randn(64, x_dim, dtype=torch.float64) if x_dim else None
    energy = energy.double()
    e, g = energy.energy_and_grad(y, x)
    traced = torch.compile(energy.energy_and_grad, backend="eager", fullgraph=True)
    e2, g2 = traced(y, x)
    torch.testing.assert_close(e2, e, rtol=0, atol=1e-12)
    torch.testing.assert_close(g2, g, rtol=0, atol=1e-12)
    assert g2.is_contiguous() or not hidden  # one layer: the eager slice of its weight row
    assert not e2.requires_grad and not g2.requires_grad
    checked = torch.compile(energy.energy_and_grad, backend="eager")  # raises eagerly
    with pytest.raises(ValueError, match="conditional" if x_dim else "unconditional"):
        checked(y, None if x_dim else torch.zeros(64, 1, dtype=torch.float64))


def test_merge_repeated_work_merges_pure_ops_only() -> None:
    from torch.fx.experimental.proxy_tensor import make_fx

    def fn(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(a.shape) + torch.randn(a.shape)  # two draws: never merged
        return torch.mm(a, w) + torch.mm(a, w) + torch.mm(a, w.t()) + noise

    gm = make_fx(fn)(torch.ones(3, 3), torch.eye(3))
    _compile.MergeRepeatedWork()(gm.graph)
    gm.recompile()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.aten.mm.default) == 2  # (a, w) once, (a, w.T) once
    assert targets.count(torch.ops.aten.randn.default) == 2
    a, w = torch.randn(3, 3), torch.randn(3, 3)
    torch.manual_seed(0)
    want = fn(a, w)
    torch.manual_seed(0)
    torch.testing.assert_close(gm(a, w), want)


def test_compiled_hybrid_polish_prints_no_graph_break_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The L-BFGS line searches' early exits read flags on the host (host_any / host_all,
    # behind torch.compiler.disable): torch's multi-line "Graph break from Tensor.item()"
    # warning, logged by dynamo when it traced into them, must not appear.
    from ebmlab.inference.lbfgs import host_all, host_any

    assert host_any(torch.tensor([False, True])) and not host_all(torch.tensor([False, True]))
    q = eb.energies.Quadratic(torch.diag(torch.tensor([1.0, 30.0])), mean=[1.0, -1.0])
    y0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(3)) * 3
    with caplog.at_level("WARNING", logger="torch._dynamo"), warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.InferenceWarning)
        warnings.simplefilter("error", UserWarning)  # no fallback: really compiled
        got = eb.infer(q, init=y0.unsqueeze(0), compile=True, max_steps=60, check_every=10)
    assert not [r for r in caplog.records if "Graph break" in r.getMessage()]
    torch.testing.assert_close(got.y[0, 0], torch.tensor([1.0, -1.0]), rtol=0, atol=1e-4)
