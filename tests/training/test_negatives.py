"""Negative sources: the most offending answer against brute force, samplers, noise, shuffles."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.training.negatives import Gaussian, MostOffending, Sampled, Shuffled, Uniform


def _brute_force_offending(energy, y, eps, box, num=301):
    """The lowest energy on a fine grid among points at least eps from y (the reference)."""
    grid = box.grid(num).points
    e = energy(grid)
    far = (grid - y).norm(dim=-1) >= eps
    return e[far].min()


def test_most_offending_finds_the_other_well(generator):
    dw = eb.energies.DoubleWell(1)
    y = torch.tensor([[1.0], [-1.0]])
    y_bar = MostOffending(0.5, num_starts=8)(dw, y, generator=generator)
    assert torch.allclose(y_bar, -y, atol=1e-3)


def test_most_offending_on_the_sphere_when_no_minimum_is_far(generator):
    # Every minimum of the double well lies within eps = 3 of y = 1, so the constrained
    # minimum is on the sphere |y' - 1| = 3: F(-2) = 9 < F(4) = 225, hence -2.
    dw = eb.energies.DoubleWell(1)
    y_bar = MostOffending(3.0, num_starts=8)(dw, torch.tensor([[1.0]]), generator=generator)
    assert (y_bar - 1.0).abs().item() >= 3.0 * (1 - 1e-9)
    assert torch.allclose(y_bar, torch.tensor([[-2.0]]), atol=1e-3)


@pytest.mark.parametrize("eps", [0.3, 2.5])
def test_most_offending_matches_brute_force_in_2d(generator, eps):
    energy = eb.energies.GaussianMixture([[1.0, 1.0], [-1.0, 0.5], [0.0, -1.5]], [0.5, 0.7, 0.6])
    box = eb.Box([-4.0, -4.0], [4.0, 4.0])
    y = torch.tensor([[1.0, 1.0], [0.2, -1.2]])
    y_bar = MostOffending(eps, num_starts=32, num_boundary=16, max_steps=300)(
        energy, y, generator=generator
    )
    dist = (y_bar - y).norm(dim=-1)
    assert (dist >= eps * (1 - 1e-9)).all()
    for i in range(2):
        ref = _brute_force_offending(energy, y[i], eps, box)
        # Grid points at distance >= eps are feasible, so the grid minimum is >= the true
        # constrained minimum: a correct search lands at or below it, up to its own
        # tolerance (1e-3 in energy, far above the solvers' gtol-level error).
        assert energy(y_bar[i : i + 1]).item() <= ref.item() + 1e-3


def test_most_offending_conditional(generator):
    f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
    x = torch.tensor([[4.0], [1.0]])
    y = torch.tensor([[2.0], [-1.0]])
    y_bar = MostOffending(0.5, num_starts=16)(f, y, x, generator=generator)
    assert torch.allclose(y_bar, -y, atol=1e-3)


def test_most_offending_is_deterministic():
    dw = eb.energies.DoubleWell(2)
    y = torch.tensor([[1.0, 1.0]])
    neg = MostOffending(0.5, num_starts=8)
    a = neg(dw, y, generator=torch.Generator().manual_seed(5))
    b = neg(dw, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_sampled_builtin_langevin_equals_the_sampler_kernel():
    q = eb.energies.Quadratic(torch.eye(2) * 2.0, mean=[0.5, -0.5])
    y = torch.randn(64, 2)
    ours = Sampled(num_steps=7, step_size=0.05)(q, y, generator=torch.Generator().manual_seed(1))
    kernel = Sampled(num_steps=7, sampler=eb.samplers.Langevin(0.05))
    theirs = kernel(q, y, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_sampled_init_modes_shapes_and_determinism():
    q = eb.energies.Quadratic(torch.eye(2))
    y = torch.randn(10, 2)
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    for init in ("data", "noise", "buffer"):
        neg = Sampled(num_steps=3, step_size=0.01, init=init, num=4, domain=box)
        a = neg(q, y, generator=torch.Generator().manual_seed(2))
        assert a.shape == (10, 4, 2)
        assert box.contains(a).all()
        neg2 = Sampled(num_steps=3, step_size=0.01, init=init, num=4, domain=box)
        assert torch.equal(a, neg2(q, y, generator=torch.Generator().manual_seed(2)))
    # CD-0 returns the data itself.
    assert torch.equal(Sampled(num_steps=0, init="data")(q, y), y)


def test_replay_buffer_state_round_trip(generator):
    q = eb.energies.Quadratic(torch.eye(1))
    y = torch.randn(8, 1)
    neg = Sampled(num_steps=2, step_size=0.1, init="buffer", buffer_size=12)
    for _ in range(3):
        neg(q, y, generator=generator)
    state = neg.state_dict()
    assert state["data"].shape == (12, 1)
    copy = Sampled(num_steps=2, step_size=0.1, init="buffer", buffer_size=12)
    copy.load_state_dict(state)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(neg(q, y, generator=g1), copy(q, y, generator=g2))


def test_sampled_langevin_keeps_the_gaussian_up_to_its_known_bias():
    # ULA on N(0, s^2) has stationary variance s^2 / (1 - h / (2 s^2)); start from exact
    # samples of that law and check it is kept. n = 20000 chains: the sample variance has
    # relative sd sqrt(2/n) = 1%; 5 sd = 5%.
    s2, h, n = 1.0, 0.1, 20000
    v = s2 / (1 - h / (2 * s2))
    q = eb.energies.Quadratic(torch.eye(1) / s2)
    g = torch.Generator().manual_seed(4)
    y0 = math.sqrt(v) * torch.randn(n, 1, generator=g)
    out = Sampled(num_steps=20, step_size=h, init="data")(q, y0, generator=g)
    assert abs(out.var().item() / v - 1) < 5 * math.sqrt(2 / n)
    assert abs(out.mean().item()) < 5 * math.sqrt(v / n)


def test_uniform_and_gaussian_noise(generator):
    box = eb.Box([-1.0, 0.0], [1.0, 3.0])
    u = Uniform(box, num=5)(None, torch.zeros(4, 2), generator=generator)
    assert u.shape == (4, 5, 2) and box.contains(u).all()
    assert torch.allclose(Uniform(box).log_prob(u), torch.full((4, 5), -math.log(6.0)))
    assert Uniform(box).log_prob(torch.tensor([[5.0, 5.0]])).item() == -math.inf
    noise = Gaussian(1.5, mean=torch.tensor([1.0, -1.0]))
    z = noise(None, torch.zeros(3, 2), generator=generator)
    ref = torch.distributions.Normal(torch.tensor([1.0, -1.0]), 1.5).log_prob(z).sum(-1)
    assert torch.allclose(noise.log_prob(z), ref)


def test_shuffled_is_a_derangement(generator):
    y = torch.arange(7.0).unsqueeze(-1)
    for _ in range(20):
        neg = Shuffled()(None, y, generator=generator)
        assert (neg != y).all()
        assert sorted(neg.flatten().tolist()) == y.flatten().tolist()
    with pytest.raises(ValueError, match="at least 2"):
        Shuffled()(None, y[:1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="epsilon"):
        MostOffending(0.0)
    with pytest.raises(ValueError, match="init"):
        Sampled(init="random")
    with pytest.raises(ValueError, match="reinit"):
        Sampled(reinit=2.0)
    with pytest.raises(TypeError, match="domain"):
        Uniform([0, 1])
    with pytest.raises(TypeError, match="sampler"):
        Sampled(sampler=object())


def test_auto_step_is_metropolis_adjusted_and_keeps_a_narrow_gaussian():
    # The default step adapts to the MALA acceptance; the chain is exact, so samples of
    # N(0, s^2) with s = 0.1 (where an unadjusted step of 0.01 is 2x too wide) are kept.
    s, n = 0.1, 20000
    q = eb.energies.Quadratic(torch.eye(2) / s**2)
    g = torch.Generator().manual_seed(4)
    neg = Sampled(num_steps=20)
    assert neg.step_size == "auto" and neg.metropolis and math.isnan(neg.current_step_size)
    y = s * torch.randn(n, 2, generator=g)
    for _ in range(3):
        out = neg(q, y, generator=g)
    assert abs(out.var().item() / s**2 - 1) < 5 * math.sqrt(1 / n)
    assert 0.2 * s**2 < neg.current_step_size <= 4 * s**2
    wide = Sampled(num_steps=20, step_size=s**2, metropolis=False)(q, y, generator=g)
    assert wide.var().item() / s**2 > 1.5  # the unadjusted step's bias: 1 / (1 - 1/2) = 2


def test_auto_step_is_state_restored_and_reset():
    q = eb.energies.Quadratic(torch.eye(1))
    y = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    neg = Sampled(num_steps=3, init="buffer", buffer_size=12, domain=eb.Box([-2.0], [2.0]))
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        assert neg.domain.contains(neg(q, y, generator=g)).all()
    state = neg.state_dict()
    assert set(state) == {"data", "position", "is_filled", "step_size"}
    copy = Sampled(num_steps=3, init="buffer", buffer_size=12, domain=eb.Box([-2.0], [2.0]))
    copy.load_state_dict(state)
    assert copy.current_step_size == neg.current_step_size
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(neg(q, y, generator=g1), copy(q, y, generator=g2))
    neg.reset()
    assert math.isnan(neg.current_step_size)


def test_step_size_and_metropolis_arguments_are_checked():
    with pytest.raises(ValueError, match="step_size"):
        Sampled(step_size="big")
    with pytest.raises(ValueError, match="auto"):
        Sampled(metropolis=False)
    with pytest.raises(TypeError, match="metropolis"):
        Sampled(step_size=0.1, metropolis=1)
    with pytest.raises(ValueError, match="compile"):
        Sampled(compile=True)
    assert Sampled(step_size=0.1, metropolis=True).metropolis
    assert not Sampled(step_size=0.1).metropolis


def test_uniform_jumps_move_chains_between_separated_modes_in_proportion():
    # Two equal modes 4 apart: local steps never cross, uniform jumps split the chains evenly;
    # a chain outside the box never jumps (its reverse move is impossible).
    from ebmlab.training.adjusted import uniform_jumps

    mix = eb.energies.GaussianMixture.ring(2, radius=2.0, scale=0.5)
    box = eb.Box([-3.0, -3.0], [3.0, 3.0])
    y0 = torch.tensor([[2.0, 0.0]]).repeat(4000, 1)
    y0[-10:] = torch.tensor([3.5, 0.0])  # outside the box
    y, moved = uniform_jumps(mix, y0, None, box, 60, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y[-10:], y0[-10:])
    left = (y[:-10, 0] < 0).double().mean().item()
    assert abs(left - 0.5) < 0.05 and 0.9 < float(moved) <= 1.0
    same, _ = uniform_jumps(mix, y0, None, box, 0)
    assert torch.equal(same, y0)


def test_sampled_jumps_auto_resolution_and_state():
    y2 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    assert Sampled().num_jumps(y2) == 4  # the default adapted chain on a small event
    assert Sampled(step_size=0.01).num_jumps(y2) == 0  # a fixed step keeps the old chain
    assert Sampled(num_steps=0).num_jumps(y2) == 0
    assert Sampled().num_jumps(torch.zeros(4, 5)) == 0  # uniform proposals fail in high dim
    assert Sampled(step_size=0.01, jumps=2).num_jumps(y2) == 2
    with pytest.raises(ValueError, match="jumps"):
        Sampled(jumps="many")
    q = eb.energies.Quadratic(torch.eye(2))
    neg = Sampled(num_steps=2, init="data")
    neg(q, y2, generator=torch.Generator().manual_seed(1))
    state = neg.state_dict()
    low, high = state["jump_box"]
    assert bool((low < y2.amin(0)).all() and (high > y2.amax(0)).all())
    copy = Sampled(num_steps=2, init="data")
    copy.load_state_dict(state)
    y3 = 3 * y2  # later batches do not move the box: it is the first positives' one
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(neg(q, y3, generator=g1), copy(q, y3, generator=g2))
    assert torch.equal(copy.state_dict()["jump_box"], state["jump_box"])


def test_default_negatives_jump_inside_the_widened_data_box():
    y = eb.data.checkerboard(2000, generator=torch.Generator().manual_seed(0))
    neg = eb.training.negatives.default_negatives(y)
    width = y.amax(0) - y.amin(0)
    assert neg.jumps == 4 and neg.num_jumps(y) == 4
    assert torch.allclose(neg.domain.low, y.amin(0) - 0.5 * width, atol=1e-4)
    assert torch.allclose(neg.domain.high, y.amax(0) + 0.5 * width, atol=1e-4)
    assert eb.training.negatives.default_negatives(torch.rand(50, 3, 3)).jumps == 0
