"""Contract suite over every registered kernel, the sample() driver and their errors."""

from __future__ import annotations

import inspect

import pytest
import torch

import ebmlab as eb
from ebmlab.samplers import KERNELS

# One reasonable configuration per registered kernel (a new kernel needs one line here).
FACTORIES = {
    "langevin": lambda **kw: eb.samplers.Langevin(0.05, **kw),
    "mala": lambda **kw: eb.samplers.MALA(0.1, **kw),
    "hmc": lambda **kw: eb.samplers.HMC(0.2, 4, **kw),
    "nuts": lambda **kw: eb.samplers.NUTS(0.3, max_tree_depth=5, **kw),
    "random_walk": lambda **kw: eb.samplers.RandomWalkMetropolis(0.5, **kw),
    "parallel_tempering": lambda **kw: eb.samplers.ParallelTempering(
        eb.samplers.MALA(0.1, **kw), [1.0, 0.5, 0.25]),
    "svgd": lambda **kw: eb.samplers.SVGD(0.1, **kw),
}
# Kernels that use no random numbers: the same chain under any generator.
DETERMINISTIC = {"svgd"}
INFO_FIELDS = ("acceptance_rate", "is_accepted", "is_divergent")


def test_every_kernel_has_a_factory():
    assert set(FACTORIES) == set(KERNELS)


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtype_and_no_graph(name, dtype):
    energy = eb.energies.GaussianMixture.ring(4).to(dtype)
    kernel = FACTORIES[name]()
    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(6, 2, generator=g, dtype=dtype)
    state = kernel.init(y0, energy)
    for _ in range(3):
        state, info = kernel.step(state, energy, generator=g)
    assert state.position.shape == (6, 2) and state.position.dtype == dtype
    assert state.energy.shape == (6,)
    assert not (state.position.requires_grad or state.energy.requires_grad)
    for field in INFO_FIELDS:
        assert getattr(info, field).shape == (6,)
    assert info.is_accepted.dtype == torch.bool and info.is_divergent.dtype == torch.bool
    # The cached energy (and gradient, for a kernel that keeps one) are those of the position.
    e, grad = energy.energy_and_grad(state.position)
    torch.testing.assert_close(state.energy, e)
    if "grad" in state._fields:
        assert state.grad.shape == (6, 2)
        torch.testing.assert_close(state.grad, grad)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_determinism_under_a_generator(name):
    energy = eb.energies.GaussianMixture.ring(8)
    y0 = torch.randn(5, 2)
    runs = [
        eb.sample(energy, y0, FACTORIES[name](), 10, burn_in=5,
                  generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].samples, runs[1].samples)
    other = eb.sample(energy, y0, FACTORIES[name](), 10, burn_in=5,
                      generator=torch.Generator().manual_seed(8))
    assert torch.equal(runs[0].samples, other.samples) == (name in DETERMINISTIC)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_conditional_energy_and_image_shaped_y(name):
    energy = eb.energies.MLPEnergy(2, x_dim=3, hidden=(8,))
    x = torch.randn(4, 3)
    chain = eb.sample(energy, torch.zeros(4, 2), FACTORIES[name](), 6, x,
                      generator=torch.Generator().manual_seed(0))
    assert chain.samples.shape == (6, 4, 2)
    # y of event shape (2, 3): kernels never assume a flat vector.
    cube = eb.FunctionEnergy(lambda y, x: 0.5 * (y**2).sum((-2, -1)), y_shape=(2, 3))
    chain = eb.sample(cube, torch.zeros(5, 2, 3), FACTORIES[name](), 4,
                      generator=torch.Generator().manual_seed(0))
    assert chain.samples.shape == (4, 5, 2, 3) and chain.energy.shape == (4, 5)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_box_domain_keeps_samples_inside(name):
    if "domain" not in inspect.signature(KERNELS[name]).parameters:
        pytest.skip(f"{name} takes no domain (a box is an energy of +inf outside, for it)")
    box = eb.Box([-1.0, -0.5], [1.0, 0.5])
    energy = eb.energies.Quadratic(torch.eye(2) * 0.1)
    kernel = FACTORIES[name](domain=box)
    chain = eb.sample(energy, torch.zeros(20, 2), kernel, 30,
                      generator=torch.Generator().manual_seed(0))
    assert bool(box.contains(chain.samples.flatten(0, 1)).all())


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_sample_accepts_every_registered_kernel(name):
    # Every registered kernel runs through eb.sample with burn-in and thinning (8 // 2 kept,
    # the last one the final state); its Info fields come back stacked, one row per sample.
    energy = eb.energies.GaussianMixture.ring(4)
    kernel = FACTORIES[name]()
    chain = eb.sample(energy, torch.randn(5, 2), kernel, 8, burn_in=4, thin=2,
                      generator=torch.Generator().manual_seed(0))
    assert chain.samples.shape == (4, 5, 2) and chain.energy.shape == (4, 5)
    assert type(chain.info) is type(kernel.step(chain.state, energy)[1])
    for field in INFO_FIELDS:
        assert getattr(chain.info, field).shape == (4, 5)
    torch.testing.assert_close(chain.state.energy, chain.energy[-1])
    summary = chain.summary()
    assert summary["num_samples"] == 4 and 0.0 <= summary["acceptance_rate"] <= 1.0


def test_chain_thin_burn_in_and_summary():
    energy = eb.energies.Quadratic(torch.eye(2))
    g = torch.Generator().manual_seed(0)
    chain = eb.sample(energy, torch.zeros(4, 2), eb.samplers.HMC(0.3, 3), 20, burn_in=10,
                      thin=3, generator=g)
    assert chain.samples.shape == (6, 4, 2)  # 20 // 3 kept steps
    assert chain.info.energy_error.shape == (6, 4)
    summary = chain.summary()
    assert set(summary) == {"num_samples", "num_chains", "step_size", "acceptance_rate",
                            "num_divergent", "ess_min", "ess_mean", "r_hat_max",
                            "ess_bulk_min", "ess_tail_min", "mcse_max", "num_reinitialised",
                            "num_stuck", "num_stuck_sampling"}
    assert summary["num_samples"] == 6 and summary["num_chains"] == 4
    assert summary["step_size"] != 0.3  # adapted during burn-in


def test_hmc_costs_one_gradient_per_leapfrog_step():
    calls = []

    def grad_fn(y, x):
        calls.append(1)
        return y

    energy = eb.FunctionEnergy(lambda y, x: 0.5 * (y**2).sum(-1), grad_fn=grad_fn,
                               y_shape=(2,))
    g = torch.Generator().manual_seed(0)
    for kernel, per_step in ((eb.samplers.HMC(0.1, 7), 7), (eb.samplers.MALA(0.1), 1),
                             (eb.samplers.Langevin(0.1), 1)):
        state = kernel.init(torch.zeros(3, 2), energy)
        calls.clear()
        for _ in range(5):
            state, _ = kernel.step(state, energy, generator=g)
        assert len(calls) == 5 * per_step, type(kernel).__name__


def test_mala_is_hmc_with_one_leapfrog_step():
    # With eps = sqrt(2h), one leapfrog step from p ~ N(0, 1/beta) is the MALA proposal, and
    # the Hamiltonian ratio equals the MH ratio: same draws, same chain (up to rounding).
    energy = eb.energies.GaussianMixture.ring(8)
    y0 = torch.randn(50, 2)
    h, beta = 0.08, 2.0
    mala = eb.sample(energy, y0, eb.samplers.MALA(h, beta), 20,
                     generator=torch.Generator().manual_seed(3))
    hmc = eb.sample(energy, y0, eb.samplers.HMC((2 * h) ** 0.5, 1, beta), 20,
                    generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mala.samples, hmc.samples, rtol=1e-9, atol=1e-9)
    assert torch.equal(mala.info.is_accepted, hmc.info.is_accepted)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: eb.samplers.Langevin(0.0), "step_size"),
        (lambda: eb.samplers.Langevin(-1.0), "step_size"),
        (lambda: eb.samplers.MALA(float("nan")), "step_size"),
        (lambda: eb.samplers.MALA(0.1, beta=0.0), "beta"),
        (lambda: eb.samplers.HMC(0.1, 0), "num_leapfrog"),
        (lambda: eb.samplers.HMC(0.1, 3, mass=-1.0), "mass"),
        (lambda: eb.samplers.NUTS(0.1, max_tree_depth=0), "max_tree_depth"),
        (lambda: eb.samplers.NUTS(-0.1), "step_size"),
        (lambda: eb.samplers.MALA(0.1, target_acceptance=1.5), "target_acceptance"),
    ],
)
def test_bad_hyper_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_types_are_refused():
    with pytest.raises(TypeError, match="num_leapfrog"):
        eb.samplers.HMC(0.1, 2.5)
    with pytest.raises(TypeError, match="step_size"):
        eb.samplers.MALA("0.1")
    with pytest.raises(TypeError, match="domain"):
        eb.samplers.Langevin(0.1, domain=(0, 1))


def test_sample_refuses_bad_input():
    energy = eb.energies.Quadratic(torch.eye(2))
    kernel = eb.samplers.MALA(0.1)
    with pytest.raises(ValueError, match=r"y0 has shape \(4, 3\).*\(B, 2\)"):
        eb.sample(energy, torch.zeros(4, 3), kernel, 10)
    with pytest.raises(TypeError, match="y0 must be a torch.Tensor"):
        eb.sample(energy, [[0.0, 0.0]], kernel, 10)
    with pytest.raises(TypeError, match="sampler must be a kernel"):
        eb.sample(energy, torch.zeros(4, 2), "mala", 10)
    with pytest.raises(ValueError, match="num_steps"):
        eb.sample(energy, torch.zeros(4, 2), kernel, 0)
    with pytest.raises(ValueError, match="thin"):
        eb.sample(energy, torch.zeros(4, 2), kernel, 2, thin=3)
    with pytest.raises(ValueError, match="burn_in"):
        eb.sample(energy, torch.zeros(4, 2), kernel, 2, burn_in=-1)
    with pytest.raises(TypeError, match="generator"):
        eb.sample(energy, torch.zeros(4, 2), kernel, 2, generator=0)
    with pytest.raises(ValueError, match="batch sizes differ"):
        eb.sample(eb.energies.MLPEnergy(2, x_dim=1), torch.zeros(4, 2), kernel, 2,
                  torch.zeros(3, 1))
    nan = eb.FunctionEnergy(lambda y, x: y.sum(-1) * float("nan"), y_shape=(2,))
    with pytest.raises(ValueError, match="not finite at rows"):
        eb.sample(nan, torch.zeros(4, 2), kernel, 2)
    with pytest.raises(ValueError, match="inside the sampler's domain"):
        eb.sample(energy, torch.full((4, 2), 5.0), eb.samplers.MALA(0.1, domain=eb.Box(
            [-1.0, -1.0], [1.0, 1.0])), 2)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_samples_a_free_energy(name):
    # A FreeEnergy (z of the course's ellipse eliminated at finite beta) is an Energy like
    # any other: every kernel runs on it through its energy_and_grad.
    import math

    grid = eb.latent.Grid(0.0, 2 * math.pi, 24, periodic=True)
    free = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=4.0)
    chain = eb.sample(free, torch.zeros(8, 2) + torch.tensor([2.0, 0.0]), FACTORIES[name](), 5,
                      generator=torch.Generator().manual_seed(0))
    assert chain.samples.shape == (5, 8, 2)
    assert bool(torch.isfinite(chain.energy).all())


def test_progress_bar_runs(capsys):
    energy = eb.energies.Quadratic(torch.eye(2))
    chain = eb.sample(energy, torch.zeros(2, 2), eb.samplers.MALA(0.1), 5, burn_in=3,
                      progress=True, generator=torch.Generator().manual_seed(0))
    assert chain.samples.shape == (5, 2, 2)
    assert "sampling" in capsys.readouterr().err
