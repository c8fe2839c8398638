"""compile= on eb.sample: the eager fallback, agreement with the eager path, and its statistics."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from scipy import stats

import ebmlab as eb
from ebmlab import _compile


def test_check_compile_values() -> None:
    assert _compile.check_compile(False) is None
    assert _compile.check_compile(None) is None
    assert _compile.check_compile(True) == "default"
    assert _compile.check_compile("cuda-graph") == "cuda-graph"
    with pytest.raises(ValueError, match="compile must be False, True"):
        _compile.check_compile("fast")
    with pytest.raises(ValueError, match="negatives_compile"):
        _compile.check_compile(1, name="negatives_compile")


def test_fallback_warns_once_and_is_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(fn: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(_compile, "_torch_compile", no_compiler)
    f = _compile.compiled(lambda t: t * 2, mode="default", what="test step")
    with pytest.warns(UserWarning, match=r"could not compile the test step \(RuntimeError: "
                                         r"no C\+\+ compiler found\); running eager"):
        out = f(torch.ones(3))
    assert torch.equal(out, torch.full((3,), 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(f(torch.ones(2)), torch.full((2,), 2.0))  # no second warning
    assert f.is_eager


def test_failed_first_call_restores_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiled function that draws and then fails: the eager rerun sees the same stream.
    def broken(fn: object, **kwargs: object) -> object:
        def call(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            torch.randn(5, generator=generator)
            raise NotImplementedError("double backward")

        return call

    monkeypatch.setattr(_compile, "_torch_compile", broken)

    def step(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return t + torch.randn(t.shape, generator=generator)

    f = _compile.compiled(step, mode="default", what="step")
    with pytest.warns(UserWarning, match="double backward"):
        got = f(torch.zeros(4), torch.Generator().manual_seed(3))
    assert torch.equal(got, step(torch.zeros(4), torch.Generator().manual_seed(3)))


def test_a_failed_recompilation_falls_back_and_a_real_error_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Compiles fine for the first shape, fails to recompile for a second one (as a dtype or
    # shape change can): one warning, the eager result, the stream rewound; and an error that
    # the function raises eagerly as well is the caller's and propagates unchanged.
    def first_shape_only(fn: object, **kwargs: object) -> object:
        shapes: list[torch.Size] = []

        def call(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            shapes.append(t.shape)
            if t.shape != shapes[0]:
                torch.randn(7, generator=generator)
                raise RuntimeError("recompilation failed")
            return fn(t, generator)

        return call

    monkeypatch.setattr(_compile, "_torch_compile", first_shape_only)

    def step(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not torch.isfinite(t).all():
            raise ValueError("non-finite input")
        return t + torch.randn(t.shape, generator=generator)

    f = _compile.compiled(step, mode="default", what="step")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(torch.zeros(4), torch.Generator().manual_seed(1))
        with pytest.raises(ValueError, match="non-finite"):  # the caller's error, no warning
            f(torch.full((4,), float("nan")), torch.Generator().manual_seed(1))
    assert not f.is_eager
    with pytest.warns(UserWarning, match="recompilation failed"):
        got = f(torch.zeros(3), torch.Generator().manual_seed(2))
    assert torch.equal(got, step(torch.zeros(3), torch.Generator().manual_seed(2)))
    assert f.is_eager


def test_cuda_graph_on_cpu_warns_and_uses_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake(fn: object, **kwargs: object) -> object:
        seen.update(kwargs)
        return fn

    monkeypatch.setattr(_compile, "_torch_compile", fake)
    f = _compile.compiled(lambda t: t + 1, mode="cuda-graph", what="step")
    with pytest.warns(UserWarning, match="CUDA graphs need CUDA"):
        f(torch.zeros(2))
    assert "mode" not in seen and seen["dynamic"] is False
    assert f.mode == "default"


# --- eb.sample(..., compile=...) -------------------------------------------------------------
# The compiled tests pay one torch.compile each (~20 s on an idle CPU core, more under load):
# two of them, marked slow, on tiny shapes.

MIXTURE = eb.energies.GaussianMixture.ring(4, radius=1.5, scale=0.5).double()


def mixture_samples(n: int, g: torch.Generator) -> torch.Tensor:
    """Exact draws from MIXTURE (as in test_statistics.py)."""
    k = torch.randint(MIXTURE.means.shape[0], (n,), generator=g)
    noise = torch.randn(n, 2, generator=g) * MIXTURE.log_scales.detach().exp()[k]
    return MIXTURE.means.detach()[k] + noise


def test_sample_falls_back_to_eager_with_one_warning(monkeypatch, generator):
    def no_compiler(fn: object, **kwargs: object) -> object:
        raise RuntimeError("Compiler: cc not found")

    monkeypatch.setattr(_compile, "_torch_compile", no_compiler)
    y0 = mixture_samples(16, generator)
    seed = generator.initial_seed()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = eb.sample(MIXTURE, y0, eb.samplers.MALA(0.2), 20, burn_in=10, compile=True,
                        generator=torch.Generator().manual_seed(seed))
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(messages) == 1
    assert "could not compile the MALA step (RuntimeError: Compiler: cc not found)" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = eb.sample(MIXTURE, y0, eb.samplers.MALA(0.2), 20, burn_in=10,
                          generator=torch.Generator().manual_seed(seed))
    assert torch.equal(got.samples, eager.samples)


def test_a_kernel_without_advance_runs_eager_with_a_warning(generator):
    y0 = mixture_samples(4, generator)
    with pytest.warns(UserWarning, match="the NUTS step cannot be compiled"):
        warnings.simplefilter("ignore", eb.SamplerWarning)
        eb.sample(MIXTURE, y0, eb.samplers.NUTS(0.3, target_acceptance=None), 4, compile=True,
                  generator=generator)


@pytest.mark.slow
def test_compiled_mala_equals_eager_and_keeps_the_law(generator):
    # 2000 chains from exact mixture draws, 6 MALA steps compiled and eager with the same
    # stream: equal to float64 rounding (the compiled graph takes the general quadratic form,
    # the eager one the shared-scale path), and the compiled end state still has the law of
    # the target: two-sample KS tests on y_1 and on the energy at level 1e-5 each.
    y0 = mixture_samples(2000, generator)
    seed = generator.initial_seed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        fast = eb.sample(MIXTURE, y0, eb.samplers.MALA(0.15, target_acceptance=None), 6,
                         compile=True, generator=torch.Generator().manual_seed(seed))
        slow = eb.sample(MIXTURE, y0, eb.samplers.MALA(0.15, target_acceptance=None), 6,
                         generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(fast.samples, slow.samples, rtol=1e-9, atol=1e-9)
    assert torch.equal(fast.info.is_accepted, slow.info.is_accepted)
    end, fresh = fast.samples[-1], mixture_samples(2000, generator)
    assert stats.ks_2samp(end[:, 0].numpy(), fresh[:, 0].numpy()).pvalue > 1e-5
    energies = MIXTURE.energy_and_grad(end)[0], MIXTURE.energy_and_grad(fresh)[0]
    assert stats.ks_2samp(energies[0].numpy(), energies[1].numpy()).pvalue > 1e-5


@pytest.mark.slow
def test_compiled_hmc_after_per_chain_adaptation_equals_eager(generator):
    # The adapting burn-in runs eager; the adapted kernel (a step size and a diagonal mass
    # per chain, as tensors) is compiled for the sampling steps.
    y0 = mixture_samples(8, generator)
    seed = generator.initial_seed()
    runs = []
    for compile in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", eb.SamplerWarning)
            runs.append(eb.sample(MIXTURE, y0, eb.samplers.HMC(0.2, 3), 10, burn_in=160,
                                  compile=compile, generator=torch.Generator().manual_seed(seed)))
    fast, slow = runs
    assert fast.mass is not None and fast.mass.shape == (8, 2)
    torch.testing.assert_close(fast.samples, slow.samples, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.info.energy_error, slow.info.energy_error, rtol=1e-7,
                               atol=1e-9)


def test_bench_gpu_refuses_without_cuda():
    # The GPU benchmark is a prepared script for a CUDA machine: without CUDA it must say so
    # and exit with status 2, writing nothing.
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "needs a CUDA device" in done.stderr


@pytest.mark.slow
def test_compiling_keeps_distribution_validation_on():
    # torch.compile turns torch.distributions' validation off for the whole process when it
    # builds its first wrapper (pytorch/pytorch#185438); after ebmlab's compiled calls the
    # user's setting must be back, so eb.Gibbs still refuses values outside its support.
    # A fresh process: the patch happens once per process.
    code = (
        "import torch, ebmlab as eb\n"
        "from torch.distributions import Distribution\n"
        "from ebmlab import _compile\n"
        "assert Distribution._validate_args\n"
        "f = _compile.compiled(lambda t: t * 2, mode='default', what='test step')\n"
        "assert torch.equal(f(torch.ones(3)), torch.full((3,), 2.0)) and not f.is_eager\n"
        "assert Distribution._validate_args, 'validation left off'\n"
        "g = eb.Gibbs(eb.FunctionEnergy(lambda y, x: y.sum(-1), y_shape=(2,)),\n"
        "             domain=eb.Binary(2))\n"
        "try:\n"
        "    g.log_prob(torch.full((1, 2), 0.5))\n"
        "except ValueError:\n"
        "    print('refused')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "refused"
