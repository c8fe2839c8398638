"""NUTS's batched bookkeeping: the same numbers as the one-at-a-time definitions.

Deterministic (no failure budget): the batched U-turn checks against the dot products written
out, and each chain's num_integration_steps after a compacted step against the gradients
evaluated for its row (logged through ``select_rows``).
Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.samplers.nuts import _merge_ok, _no_u_turn


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def _criterion(p_start, p_end, rho, inv_mass):
    if isinstance(inv_mass, torch.Tensor):
        rho = rho * inv_mass
    return (_dot(p_start, rho) > 0) & (_dot(p_end, rho) > 0)


@pytest.mark.parametrize("mass", ["number", "diagonal", "per_chain"])
@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_batched_u_turn_checks_equal_the_written_out_criterion(mass, shape, generator):
    n = 64
    p = [torch.randn((n, *shape), generator=generator, dtype=torch.float64) for _ in range(6)]
    inv = {"number": 0.7,
           "diagonal": torch.rand(shape, generator=generator, dtype=torch.float64) + 0.1,
           "per_chain": torch.rand((n, *shape), generator=generator, dtype=torch.float64) + 0.1,
           }[mass]
    a_out, a_in, a_rho, b_out, b_in, b_rho = p
    want = (_criterion(a_out, b_out, a_rho + b_rho, inv)
            & _criterion(a_out, b_in, a_rho + b_in, inv)
            & _criterion(a_in, b_out, b_rho + a_in, inv))
    got = _merge_ok((a_out, a_in, a_rho), (b_out, b_in, b_rho), inv)
    assert torch.equal(got, want)
    assert 0 < int(want.sum()) < n  # both outcomes occur
    assert torch.equal(_no_u_turn(a_out, b_out, a_rho, inv), _criterion(a_out, b_out, a_rho, inv))


class _Rows(eb.Energy):
    """Logs which batch rows every gradient evaluation is for (through ``select_rows``)."""

    def __init__(self, base: eb.Energy, rows: torch.Tensor | None, log: list) -> None:
        super().__init__()
        self.base, self.rows, self.log, self.y_shape = base, rows, log, base.y_shape

    def forward(self, y, x=None):
        return self.base.forward(y, x)

    def energy_and_grad(self, y, x=None):
        self.log.append(torch.arange(y.shape[0]) if self.rows is None else self.rows)
        return self.base.energy_and_grad(y, x)

    def select_rows(self, idx: torch.Tensor) -> _Rows:
        return _Rows(self.base, idx, self.log)


def test_compacted_step_counts_each_chains_own_gradients(generator):
    # Chains of very different step sizes stop at different depths, so most leapfrog steps
    # run on a compacted working set; each chain's num_integration_steps must be the number
    # of gradients evaluated for that chain, and its acceptance rate a mean over them.
    base = eb.energies.Quadratic(torch.diag(torch.logspace(0, 3, 4, dtype=torch.float64)))
    chains = 12
    steps = torch.logspace(-2.5, -0.5, chains, dtype=torch.float64).view(-1, 1)
    kernel = eb.samplers.NUTS(0.1, max_tree_depth=8).with_step_size(steps)
    log: list = []
    energy = _Rows(base, None, log)
    state = kernel.init(torch.randn(chains, 4, generator=generator, dtype=torch.float64) * 0.1,
                        energy)
    for _ in range(3):
        log.clear()
        state, info = kernel.step(state, energy, generator=generator)
        depth, num = info.tree_depth, info.num_integration_steps
        assert len(set(depth.tolist())) > 1  # compaction happened
        counted = torch.bincount(torch.cat(log), minlength=chains)
        assert torch.equal(counted, num)
        assert bool((num <= 2 ** depth - 1).all() & (num >= 2 ** (depth - 1)).all())
        assert bool(((info.acceptance_rate >= 0) & (info.acceptance_rate <= 1)).all())
