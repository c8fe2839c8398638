"""AIS evaluates the energy once per step; its dense preconditioner and normal base are exact.

Failure budget (under the null that the code is right): one stderr test with 32 runs,
|t_31| < 4, p = 3.6e-4; the evaluation count and the preconditioner's shape are
deterministic. Total below 1e-3. Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.partition import AIS
from ebmlab.partition.annealing import particle_chol


class _Counting(eb.Energy):
    def __init__(self, energy: eb.Energy) -> None:
        super().__init__()
        self.energy, self.y_shape, self.n = energy, energy.y_shape, 0

    def forward(self, y, x=None):
        self.n += y.shape[0]
        return self.energy.forward(y, x)

    def energy_and_grad(self, y, x=None):
        self.n += y.shape[0]
        return self.energy.energy_and_grad(y, x)


@pytest.mark.parametrize("kernel", [None, "mala", "ghmc", "pcnl"])
def test_gradient_ais_evaluates_the_energy_once_per_step(kernel, generator):
    q = _Counting(eb.energies.Quadratic(torch.eye(3)))
    k, c, pilot = 40, 64, 16
    AIS(c, k, base="gaussian", kernel=kernel).log_partition(q, generator=generator)
    # One evaluation per chain at the first temperature, then one per step (the proposal);
    # plus, for the default (GHMC where there is a gradient), the 2-point gradient probe.
    # Earlier releases evaluated twice per step.
    assert q.n == (pilot + c) * (k + 1) + (2 if kernel is None else 0)


def test_whitened_transitions_are_unbiased_on_a_correlated_gaussian(generator):
    cov = torch.tensor([[1.0, 0.95, 0.0], [0.95, 1.0, 0.3], [0.0, 0.3, 1.0]])
    q = eb.energies.Quadratic(torch.linalg.inv(cov).to(torch.get_default_dtype()))
    ais = AIS(num_chains=256, num_temperatures=40, base="gaussian", num_runs=32)
    est = ais.log_partition(q, generator=generator)
    t = (est.value.item() - q.log_partition()) / est.stderr.item()
    assert abs(t) < 4.0, t


def test_particle_chol_is_dense_with_enough_particles_and_diagonal_otherwise(generator):
    few = torch.randn(1, 16, 32, generator=generator)
    assert particle_chol(few) is None  # 2 * 32 / 16 >= 1: the diagonal preconditioner
    many = torch.randn(1, 256, 3, generator=generator) @ torch.tensor(
        [[1.0, 0.9, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 2.0]])
    chol = particle_chol(many)
    assert chol is not None and chol.shape == (1, 3, 3)
    assert float(chol[0, 1, 0]) > 0.5  # the correlation is kept (shrunk a little)


def test_normal_base_closed_form_matches_autograd():
    # The closed-form log p0 and gradient of a normal base (no autograd graph per AIS step)
    # are those torch.distributions and autograd give, bit for bit.
    from torch.distributions import Independent, Normal

    from ebmlab.partition.annealing import NormalLogProb, base_log_prob

    base = Independent(Normal(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.3, 1.0])), 1)
    closed = base_log_prob(base, 1)
    assert isinstance(closed, NormalLogProb)
    y = torch.randn(7, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    reference = base.log_prob(y)
    (grad,) = torch.autograd.grad(reference.sum(), y)
    assert torch.equal(closed(y.detach()), reference.detach())
    assert torch.equal(closed.grad(y.detach()), grad)
    # A batched base keeps the distribution's own log_prob (and autograd).
    batched = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    assert not isinstance(base_log_prob(batched, 2), NormalLogProb)
