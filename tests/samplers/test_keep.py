"""The lean options of eb.sample: keep=, thin, check_every and the grad_dtype precision policy."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import ebmlab as eb

GAUSSIAN = eb.energies.Quadratic(torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64)))


def _quiet_sample(*args: object, **kwargs: object) -> eb.samplers.Chain:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        return eb.sample(*args, **kwargs)


@pytest.mark.parametrize("kernel", [
    lambda: eb.samplers.Langevin(0.05),
    lambda: eb.samplers.MALA(0.2),
    lambda: eb.samplers.HMC(0.2, 3),
])
@pytest.mark.parametrize("thin", [1, 3])
def test_keep_last_is_the_last_row_of_the_full_chain(kernel, thin, generator):
    y0 = torch.randn(16, 2, generator=generator)
    seed = generator.initial_seed()
    full = _quiet_sample(GAUSSIAN, y0, kernel(), 31, burn_in=20, thin=thin,
                         generator=torch.Generator().manual_seed(seed))
    last = _quiet_sample(GAUSSIAN, y0, kernel(), 31, burn_in=20, thin=thin, keep="last",
                         generator=torch.Generator().manual_seed(seed))
    assert last.samples.shape == (1, 16, 2)
    assert torch.equal(last.samples[0], full.samples[-1])
    assert torch.equal(last.energy[0], full.energy[-1])
    for a, b in zip(last.info, full.info, strict=True):
        assert torch.equal(a[0], b[-1])
    assert torch.equal(last.state.position, full.state.position)
    assert torch.equal(last.num_divergent, full.num_divergent)
    assert math.isnan(last.summary()["r_hat_max"])


def test_check_every_changes_no_sample(generator):
    y0 = torch.randn(8, 2, generator=generator)
    seed = generator.initial_seed()
    runs = [_quiet_sample(GAUSSIAN, y0, eb.samplers.Langevin(0.05), 25, burn_in=7,
                          check_every=k, generator=torch.Generator().manual_seed(seed))
            for k in (1, 4, 10)]
    for run in runs[1:]:
        assert torch.equal(run.samples, runs[0].samples)
        assert not bool(run.info.is_divergent.any())


@pytest.mark.parametrize("check_every", [1, 4, 10])
def test_a_nan_sample_is_never_reported_valid(check_every, generator):
    # h = 1.2 > 2 / L = 0.5 on the stiff coordinate: ULA explodes to inf, then NaN. Every kept
    # sample that is not finite must be flagged divergent, whatever the check interval.
    y0 = torch.randn(6, 2, generator=generator)
    with pytest.warns(eb.SamplerWarning, match="divergent"):
        chain = eb.sample(GAUSSIAN, y0, eb.samplers.Langevin(1.2), 700, check_every=check_every,
                          generator=generator)
    finite = torch.isfinite(chain.samples).all(-1) & torch.isfinite(chain.energy)
    assert not bool(finite.all())  # the run did blow up
    assert bool((chain.info.is_divergent | finite).all())
    assert bool((chain.num_divergent >= (~finite).sum(0)).all())


def test_bad_lean_arguments_are_refused():
    y0 = torch.zeros(4, 2)
    kernel = eb.samplers.MALA(0.1)
    with pytest.raises(ValueError, match="keep must be 'all' or 'last'"):
        eb.sample(GAUSSIAN, y0, kernel, 5, keep="first")
    with pytest.raises(ValueError, match="check_every"):
        eb.sample(GAUSSIAN, y0, kernel, 5, check_every=0)
    with pytest.raises(ValueError, match="compile must be"):
        eb.sample(GAUSSIAN, y0, kernel, 5, compile="fast")
    with pytest.raises(ValueError, match="grad_dtype"):
        eb.sample(GAUSSIAN, y0, kernel, 5, grad_dtype=torch.float64)
    with pytest.raises(TypeError, match="grad_dtype"):
        eb.sample(GAUSSIAN, y0, kernel, 5, grad_dtype="bfloat16")


def test_bfloat16_gradients_keep_the_state_dtype_and_the_law():
    # MALA on a float32 mixture with bfloat16 gradients: the state, energies and acceptance
    # stay float32, and the moments stay right at a loose tolerance. The energy as evaluated
    # in bfloat16 (relative error ~ 2^-8) is what MALA is exact for, so E[y] and E[|y|^2] are
    # off by at most a few per cent of the truth on top of the Monte Carlo error, bounded
    # here by z = 4.5 sd / sqrt(ESS) (sd from the exact mixture).
    g = torch.Generator().manual_seed(5)
    gm = eb.energies.GaussianMixture.ring(4, radius=1.5, scale=0.5).float()
    y0 = torch.randn(64, 2, generator=g, dtype=torch.float32)
    chain = _quiet_sample(gm, y0, eb.samplers.MALA(0.1), 300, burn_in=200, generator=g,
                          grad_dtype=torch.bfloat16)
    assert chain.samples.dtype == torch.float32
    assert chain.energy.dtype == torch.float32 and chain.state.grad.dtype == torch.float32
    assert chain.info.acceptance_rate.dtype == torch.float32
    flat = chain.samples.double()
    r2 = (flat * flat).sum(-1)  # E|y|^2 = radius^2 + 2 scale^2 = 2.75; sd of |y|^2 ~ 1.5
    ess_r2 = float(eb.diagnostics.ess(r2.unsqueeze(-1)).min())
    assert abs(float(r2.mean()) - 2.75) < 4.5 * 1.5 / math.sqrt(ess_r2) + 0.05 * 2.75
    ess = eb.diagnostics.ess(flat).min()
    assert bool((flat.mean((0, 1)).abs() < 4.5 * 1.2 / ess.sqrt() + 0.05).all())


def test_grad_dtype_leaves_float64_alone(generator):
    y0 = torch.randn(8, 2, generator=generator)
    seed = generator.initial_seed()
    a = _quiet_sample(GAUSSIAN, y0, eb.samplers.MALA(0.1), 10, grad_dtype=torch.bfloat16,
                      generator=torch.Generator().manual_seed(seed))
    b = _quiet_sample(GAUSSIAN, y0, eb.samplers.MALA(0.1), 10,
                      generator=torch.Generator().manual_seed(seed))
    assert a.samples.dtype == torch.float64
    assert torch.equal(a.samples, b.samples)  # autocast never lowers float64
