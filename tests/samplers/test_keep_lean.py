"""eb.sample's lean Langevin loop gives the step-by-step loop's chains, flags and counts."""

from __future__ import annotations

import warnings

import pytest
import torch

import ebmlab as eb


class Stepwise(eb.samplers.Langevin):
    """Langevin with its own ``draw`` (the same numbers): eb.sample runs it step by step."""

    def draw(self, y: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor]:
        return super().draw(y, generator)


def _run(kernel: eb.samplers.Langevin, energy: eb.Energy, y0: torch.Tensor,
         **kwargs: object) -> eb.samplers.Chain:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eb.sample(energy, y0, kernel, 60, generator=torch.Generator().manual_seed(5),
                         **kwargs)


def _assert_same(a: eb.samplers.Chain, b: eb.samplers.Chain) -> None:
    assert torch.equal(a.samples.nan_to_num(7.0, 8.0, 9.0), b.samples.nan_to_num(7.0, 8.0, 9.0))
    assert torch.equal(a.energy.nan_to_num(7.0, 8.0, 9.0), b.energy.nan_to_num(7.0, 8.0, 9.0))
    for u, v in zip(a.info, b.info, strict=True):
        assert torch.equal(u, v)
    assert torch.equal(a.num_divergent, b.num_divergent)


@pytest.mark.parametrize("chains", [16, 7])  # 7 x 2 values: the noise is drawn step by step
@pytest.mark.parametrize("options", [
    {"thin": 1}, {"thin": 4}, {"thin": 7, "keep": "last"}, {"thin": 3, "check_every": 7},
    {"burn_in": 13, "thin": 2},
])
def test_lean_loop_equals_the_step_by_step_loop(chains, options):
    energy = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3)
    y0 = torch.randn(chains, 2, generator=torch.Generator().manual_seed(1))
    assert eb.samplers.Langevin(0.01).has_lean_loop and not Stepwise(0.01).has_lean_loop
    _assert_same(_run(eb.samplers.Langevin(0.01), energy, y0, **options),
                 _run(Stepwise(0.01), energy, y0, **options))


@pytest.mark.parametrize("thin", [1, 3])
def test_lean_loop_flags_an_exploding_chain_as_the_step_by_step_loop(thin):
    # h = 2.5 on a unit quadratic is unstable: the chains blow up to inf, then NaN.
    energy = eb.energies.Quadratic(torch.eye(2))
    y0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    lean = _run(eb.samplers.Langevin(2.5), energy, y0, thin=thin)
    _assert_same(lean, _run(Stepwise(2.5), energy, y0, thin=thin))
    assert int(lean.num_divergent.sum()) > 0
    bad = ~torch.isfinite(lean.samples).flatten(2).all(-1)
    assert bool(lean.info.is_divergent[bad].all())  # no NaN sample reported as valid


def test_lean_loop_equals_checking_every_step():
    energy = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3)
    y0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    a = _run(eb.samplers.Langevin(0.01), energy, y0, check_every=10)
    b = _run(eb.samplers.Langevin(0.01), energy, y0, check_every=1)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.energy, b.energy)
