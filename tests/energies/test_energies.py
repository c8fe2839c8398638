"""Energy contract and the analytic / neural energies."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.energies import Banana, DoubleWell, GaussianMixture, MLPEnergy, Quadratic

# Factories, so that every energy is built under the tests' float64 default dtype.
ENERGIES = {
    "Quadratic": lambda: Quadratic(torch.tensor([[2.0, 0.3], [0.3, 1.0]]), mean=[0.5, -1.0]),
    "Ring": lambda: GaussianMixture.ring(8, radius=2.0, scale=0.3),
    "GaussianMixture": lambda: GaussianMixture(
        [[0.0, 0.0], [1.0, 2.0]], scales=[[0.5, 1.0], [1.5, 0.7]], weights=[0.3, 0.7]
    ),
    "DoubleWell": lambda: DoubleWell(2, scale=0.7),
    "Banana": lambda: Banana(a=0.5, b=5.0),
    "MLPEnergy": lambda: MLPEnergy(2, hidden=(16, 16)),
}


@pytest.mark.parametrize("name", ENERGIES)
def test_energy_and_grad_matches_autograd(name: str):
    energy = ENERGIES[name]()
    y = torch.randn(17, 2) * 2
    e_closed, g_closed = energy.energy_and_grad(y)
    e_auto, g_auto = eb.Energy.energy_and_grad(energy, y)
    torch.testing.assert_close(e_closed, e_auto)
    torch.testing.assert_close(g_closed, g_auto)
    assert not e_closed.requires_grad and not g_closed.requires_grad
    torch.testing.assert_close(energy(y).detach(), e_closed)


@pytest.mark.parametrize("name", ENERGIES)
def test_gradcheck_energy(name: str):
    energy = ENERGIES[name]()
    y = (torch.randn(4, 2)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: energy(v), (y,))


@pytest.mark.parametrize("name", ENERGIES)
def test_dtype_follows_input(name: str):
    energy = ENERGIES[name]()
    energy = energy.float()
    y = torch.randn(3, 2, dtype=torch.float32)
    e, g = energy.energy_and_grad(y)
    assert e.dtype == torch.float32 and g.dtype == torch.float32


def test_gaussian_mixture_is_normalised_density():
    # The box reaches >= 7 sd from every mean (tail mass < 1e-11). For a Gaussian integrand the
    # midpoint rule is spectrally accurate: error ~ exp(-2 pi^2 sd^2 / h^2), negligible for
    # sd >= 0.5 and h = 22/800. So the mass is 1 up to round-off; 1e-8 leaves ample room.
    gm = GaussianMixture(
        [[0.0, 0.0], [1.0, 2.0]], scales=[[0.5, 1.0], [1.5, 0.7]], weights=[0.3, 0.7]
    )
    grid = eb.Box([-10.0, -10.0], [12.0, 12.0]).grid(800)
    with torch.no_grad():
        mass = torch.exp(-gm(grid.points)).sum() * grid.cell_volume
    assert abs(float(mass) - 1.0) < 1e-8


def test_gaussian_mixture_single_component_is_gaussian_nll():
    gm = GaussianMixture([[1.0, -1.0]], scales=[[2.0, 0.5]])
    y = torch.randn(5, 2)
    ref = (
        -torch.distributions.Normal(torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.5]))
        .log_prob(y)
        .sum(-1)
    )
    torch.testing.assert_close(gm(y).detach(), ref)


def test_quadratic_log_partition_closed_form():
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    q = Quadratic(a)
    expected = math.log(2 * math.pi / 3.0) - 0.5 * math.log(float(torch.det(a)))
    assert q.log_partition(beta=3.0) == pytest.approx(expected)


def test_double_well_values():
    e = DoubleWell(3, scale=2.0)(torch.tensor([[1.0, -1.0, 1.0], [0.0, 1.0, 1.0]]))
    torch.testing.assert_close(e.detach(), torch.tensor([0.0, 2.0]))


def test_mlp_conditional_and_gradients_reach_every_parameter():
    f = MLPEnergy(3, x_dim=2, hidden=(8,))
    e = f(torch.randn(6, 3), x=torch.randn(6, 2))
    e.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


def test_function_energy_with_and_without_grad_fn():
    fn = lambda y, x: (y**3).sum(-1)  # noqa: E731
    y = torch.randn(4, 2)
    plain = eb.FunctionEnergy(fn)
    closed = eb.FunctionEnergy(fn, grad_fn=lambda y, x: 3 * y**2)
    torch.testing.assert_close(plain.energy_and_grad(y)[1], closed.energy_and_grad(y)[1])


# Bad inputs: each message names the argument, the expectation and what came.


def test_wrong_output_shape_is_refused():
    bad = eb.FunctionEnergy(lambda y, x: y.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match=r"shape \(4, 1\); expected \(B,\) = \(4,\)"):
        bad(torch.randn(4, 2))


def test_integer_y_is_refused():
    with pytest.raises(TypeError, match="y must have a floating dtype"):
        DoubleWell(1)(torch.ones(3, 1, dtype=torch.long))


def test_non_tensor_is_refused():
    with pytest.raises(TypeError, match="y must be a torch.Tensor; got list"):
        DoubleWell(1)([[1.0]])


def test_mismatched_batch_is_refused():
    f = MLPEnergy(1, x_dim=1, hidden=(4,))
    with pytest.raises(ValueError, match="batch sizes differ: y has 3 rows"):
        f(torch.zeros(3, 1), x=torch.zeros(2, 1))


def test_wrong_event_shape_is_refused():
    with pytest.raises(ValueError, match=r"DoubleWell expects \(B, \*y_shape\) = \(B, 2\)"):
        DoubleWell(2)(torch.zeros(3, 3))


def test_x_for_unconditional_is_refused():
    with pytest.raises(ValueError, match="unconditional"):
        DoubleWell(1)(torch.zeros(3, 1), x=torch.zeros(3, 1))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="precision must be square"):
        Quadratic(torch.ones(2, 3))
    with pytest.raises(ValueError, match="dim must be >= 1"):
        DoubleWell(0)
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPEnergy(2, activation="swishy")
    with pytest.raises(ValueError, match="scales must be > 0"):
        GaussianMixture([[0.0]], scales=-1.0)


def test_box_validation_and_geometry():
    box = eb.Box([-1.0, 0.0], [1.0, 3.0])
    assert box.volume == pytest.approx(6.0) and box.shape == (2,)
    y = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    assert box.contains(y).tolist() == [False, True]
    torch.testing.assert_close(box.project(y), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    grid = box.grid(4)
    assert grid.points.shape == (16, 2) and grid.cell_volume == pytest.approx(6.0 / 16)
    with pytest.raises(ValueError, match="high > low"):
        eb.Box([0.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        eb.Box([0.0], [math.inf])
