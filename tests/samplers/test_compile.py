"""compile= on eb.sample: the eager fallback, agreement with the eager path, and its statistics."""

from __future__ import annotations

import warnings

import pytest
import torch

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
