"""Blocks of steps: compiled blocks of k steps per call and the eager noise drawn per block."""

from __future__ import annotations

import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab import _compile
from ebmlab.samplers import loop

MIXTURE = eb.energies.GaussianMixture.ring(4, radius=1.5, scale=0.5).double()


def _quiet_sample(*args: object, **kwargs: object) -> eb.samplers.Chain:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        return eb.sample(*args, **kwargs)


@pytest.mark.parametrize("shape", [(8, 2), (256, 2), (7, 3), (24, 1), (16, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draw_block_is_the_stream_of_single_draws_or_none(shape, dtype):
    kernel = eb.samplers.Langevin(0.1)
    y = torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    block = kernel.draw_block(y, 5, g)
    n = y.numel()
    if n % 16:
        assert block is None
        return
    h = torch.Generator().manual_seed(3)
    single = [kernel.draw(y, h)[0] for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(block, single, strict=True))
    assert torch.equal(g.get_state(), h.get_state())  # the generator ends where it would


@pytest.mark.parametrize("chains", [8, 7, 256])
@pytest.mark.parametrize("keep, thin", [("all", 1), ("all", 3), ("last", 1)])
def test_block_noise_changes_no_number(chains, keep, thin, generator):
    # check_every=1 draws step by step; 4 and 10 draw the noise between checks at once.
    y0 = torch.randn(chains, 2, generator=generator, dtype=torch.float64)
    seed = generator.initial_seed()
    runs = [_quiet_sample(MIXTURE, y0, eb.samplers.Langevin(0.05), 33, burn_in=5, thin=thin,
                          keep=keep, check_every=k, generator=torch.Generator().manual_seed(seed))
            for k in (1, 4, 10)]
    for run in runs[1:]:
        assert torch.equal(run.samples, runs[0].samples)
        assert torch.equal(run.energy, runs[0].energy)
        assert torch.equal(run.state.grad, runs[0].state.grad)


def test_block_size():
    assert loop.block_size(eb.samplers.Langevin(0.1)) == loop.BLOCK_GRADIENTS
    assert loop.block_size(eb.samplers.MALA(0.1)) == loop.BLOCK_GRADIENTS
    assert loop.block_size(eb.samplers.HMC(0.1, 3)) == loop.BLOCK_GRADIENTS // 3
    assert loop.block_size(eb.samplers.HMC(0.1, 20)) == 1


@pytest.mark.parametrize("kernel", [
    lambda: eb.samplers.Langevin(0.05),
    lambda: eb.samplers.MALA(0.2, target_acceptance=None),
    lambda: eb.samplers.HMC(0.2, 3, target_acceptance=None),
])
@pytest.mark.parametrize("num_steps", [3, 8, 19])
def test_the_block_bookkeeping_equals_eager(kernel, num_steps, monkeypatch, generator):
    # torch.compile replaced by the identity: the blocks (and the eager steps left over at the
    # end) run the kernel's own functions, so every number must equal the eager run's.
    monkeypatch.setattr(_compile, "_torch_compile", lambda fn, **kwargs: fn)
    y0 = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    seed = generator.initial_seed()
    runs = [_quiet_sample(MIXTURE, y0, kernel(), num_steps, burn_in=4, compile=c,
                          generator=torch.Generator().manual_seed(seed)) for c in (True, False)]
    fast, slow = runs
    assert torch.equal(fast.samples, slow.samples)
    assert torch.equal(fast.energy, slow.energy)
    for a, b in zip(fast.info, slow.info, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fast.num_divergent, slow.num_divergent)


def test_blocks_of_one_step(monkeypatch, generator):
    monkeypatch.setattr(_compile, "_torch_compile", lambda fn, **kwargs: fn)
    kernel = eb.samplers.MALA(0.2, target_acceptance=None)
    fast = loop.compiled_step(kernel, "default", block=1)
    assert fast.block == 1
    y0 = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    state = kernel.init(y0, MIXTURE)
    seed = generator.initial_seed()
    a = fast.run_block(state, MIXTURE, None, generator=torch.Generator().manual_seed(seed))
    b = kernel.step(state, MIXTURE, generator=torch.Generator().manual_seed(seed))
    assert len(a) == 1 and torch.equal(a[0][0].position, b[0].position)


@pytest.mark.slow
def test_compiled_blocks_equal_eager(generator):
    # 13 Langevin steps compiled 8 per call (one block, 5 eager steps left over) against the
    # eager run on the same stream: equal to float64 rounding.
    y0 = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    seed = generator.initial_seed()
    fast, slow = (_quiet_sample(MIXTURE, y0, eb.samplers.Langevin(0.05), 13, compile=c,
                                generator=torch.Generator().manual_seed(seed))
                  for c in (True, False))
    torch.testing.assert_close(fast.samples, slow.samples, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.energy, slow.energy, rtol=1e-9, atol=1e-9)
    assert not bool(fast.info.is_divergent.any())
