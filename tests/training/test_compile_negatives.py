"""compile= for training: compiled Langevin negatives, the eager fallback and double backward."""

from __future__ import annotations

import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab import _compile
from ebmlab.training.negatives import Sampled


def _model() -> eb.Energy:
    torch.manual_seed(0)
    return eb.energies.MLPEnergy(2, hidden=(8,))


def _no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(fn: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(_compile, "_torch_compile", no_compiler)


def test_compile_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="compile must be False, True"):
        Sampled(compile="fast")
    with pytest.raises(ValueError, match="drop sampler="):
        Sampled(compile=True, sampler=eb.samplers.Langevin(0.1))


def test_fallback_warns_once_and_keeps_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_compiler(monkeypatch)
    energy, y = _model(), torch.randn(16, 2)
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    eager = Sampled(num_steps=4, step_size=0.05, init="noise", domain=box)
    fast = Sampled(num_steps=4, step_size=0.05, init="noise", domain=box, compile=True)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            want, got = eager(energy, y, generator=g1), fast(energy, y, generator=g2)
            # The same draws in the same order; the gradient by torch.func.grad.
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert [str(w.message) for w in caught if "could not compile" in str(w.message)] == [
        "compile='default': could not compile the Langevin negatives steps (RuntimeError: "
        "no C++ compiler found); running eager"
    ]
    assert torch.equal(g1.get_state(), g2.get_state())


def test_fit_with_double_backward_loss_warns_and_trains_eagerly() -> None:
    data = torch.randn(64, 2)

    def run(**kw: object) -> list[float]:
        model = _model()
        eb.fit(model, data, "exact_score_matching", num_steps=3, batch_size=16,
               progress=False, **kw)
        return [float(p.detach().sum()) for p in model.parameters()]

    want = run()
    with pytest.warns(UserWarning, match="does not support double backward"):
        got = run(compile=True)
    assert got == want


@pytest.mark.slow
def test_compiled_cd_equals_eager() -> None:
    # One real compilation: 3 steps of CD-3 on a tiny MLP, compiled negatives against eager.
    data = torch.randn(64, 2)

    def run(compile: bool) -> list[torch.Tensor]:
        model = _model()
        neg = Sampled(num_steps=3, step_size=0.05, init="data")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no fallback: really compiled
            eb.fit(model, data, "contrastive_divergence", negatives=neg, num_steps=3,
                   batch_size=16, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   progress=False, compile=compile)
        assert neg.compile_mode == ("default" if compile else None)
        return [p.detach().clone() for p in model.parameters()]

    for want, got in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
