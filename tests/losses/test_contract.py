"""Contract over the LOSSES registry: shapes, reductions, dtype, gradients, errors, docstrings."""

from __future__ import annotations

import inspect

import pytest
import torch

import ebmlab as eb
from ebmlab import losses

B, K = 5, 3
EXTRA = {
    "denoising_score_matching": {"sigma": 0.5},
}
STOCHASTIC = {
    "sliced_score_matching", "denoising_score_matching", "diffusion_recovery_likelihood",
    "energy_discrepancy",
}


def _inputs(name: str, dtype: torch.dtype, generator: torch.Generator):
    """Positional inputs for ``name`` and the expected shape of ``reduction="none"``."""
    kind = losses.LOSS_INPUTS[name]

    def energies(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(True)

    if kind == ("e_pos",):
        return (energies(B),), (B,)
    if kind == ("e_pos", "e_min"):
        return (energies(B), energies(B, K)), (B,)
    if kind == ("e_pos", "e_neg"):
        out = (B,) if name == "info_nce" else (B, K)
        return (energies(B), energies(B, K)), out
    if kind == ("e_pos", "e_all"):
        return (energies(B), energies(B, K)), (B,)
    if kind == ("e_data", "e_noise", "log_q_data", "log_q_noise"):
        return (energies(B), energies(B, K), energies(B), energies(B, K)), (B,)
    if kind == ("energy", "y", "x"):
        q = eb.energies.Quadratic([[1.5, 0.3], [0.3, 1.0]], mean=[0.5, -0.5]).to(dtype)
        return (q, torch.randn(B, 2, generator=generator, dtype=dtype), None), (B,)
    raise AssertionError(f"unknown input kind {kind} for {name}")


def _call(name, args, generator=None, **kwargs):
    extra = dict(EXTRA.get(name, {}))
    if name in STOCHASTIC:
        extra["generator"] = generator or torch.Generator().manual_seed(0)
    return losses.LOSSES[name](*args, **extra, **kwargs)


def test_registry_is_complete_and_consistent():
    assert set(losses.LOSSES) == set(losses.LOSS_INPUTS)
    for name, fn in losses.LOSSES.items():
        assert fn.__name__ == name
        assert name in losses.__all__
        assert getattr(losses, name) is fn
        params = list(inspect.signature(fn).parameters)
        assert params[: len(losses.LOSS_INPUTS[name])] == list(losses.LOSS_INPUTS[name])
        assert inspect.signature(fn).parameters["reduction"].default == "mean"
    for name, fn in losses.REGULARIZERS.items():
        assert getattr(losses, name) is fn


@pytest.mark.parametrize("name", sorted(losses.LOSSES) + sorted(losses.REGULARIZERS))
def test_docstring_states_formula_margin_and_reference(name):
    doc = getattr(losses, name).__doc__
    assert ":math:" in doc
    assert "References:" in doc
    assert "Example:" in doc
    if name in losses.LOSSES:
        assert "Margin" in doc


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_shapes_reductions_and_dtype(name, dtype):
    generator = torch.Generator().manual_seed(3)
    args, shape = _inputs(name, dtype, generator)
    none = _call(name, args, reduction="none")
    assert none.shape == shape
    assert none.dtype == dtype
    mean = _call(name, args)
    total = _call(name, args, reduction="sum")
    assert mean.shape == () and total.shape == ()
    assert mean.dtype == dtype and total.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert mean.item() == pytest.approx(none.mean().item(), rel=tol, abs=tol)
    assert total.item() == pytest.approx(none.sum().item(), rel=tol, abs=tol)
    assert torch.isfinite(none).all()


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_gradient_reaches_every_input(name):
    generator = torch.Generator().manual_seed(4)
    args, _ = _inputs(name, torch.float64, generator)
    loss = _call(name, args)
    if losses.LOSS_INPUTS[name][0] == "energy":
        targets = list(args[0].parameters())
    else:
        targets = list(args)
    grads = torch.autograd.grad(loss, targets, allow_unused=True)
    for g in grads:
        assert g is not None and torch.isfinite(g).all()
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_determinism_under_a_fixed_generator(name):
    args, _ = _inputs(name, torch.float64, torch.Generator().manual_seed(5))
    a = _call(name, args, torch.Generator().manual_seed(9), reduction="none")
    b = _call(name, args, torch.Generator().manual_seed(9), reduction="none")
    c = _call(name, args, torch.Generator().manual_seed(10), reduction="none")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


REDUCED = [n for n, fn in {**losses.LOSSES, **losses.REGULARIZERS}.items()
           if "reduction" in inspect.signature(fn).parameters]  # energy_gap: a batch statistic


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_unknown_reduction_is_refused(name):
    args, _ = _inputs(
        name if name in losses.LOSSES else "hinge" if name == "energy_l2" else "nce",
        torch.float64,
        torch.Generator().manual_seed(6),
    )
    if name == "gradient_penalty":
        args = (eb.energies.Quadratic(torch.eye(2)), torch.zeros(B, 2))
    fn = losses.LOSSES.get(name) or losses.REGULARIZERS[name]
    extra = dict(EXTRA.get(name, {}))
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\)"):
        fn(*args, **extra, reduction="average")


ENERGY_PAIRS = [n for n, k in losses.LOSS_INPUTS.items() if k[0] != "energy" and len(k) > 1]


@pytest.mark.parametrize("name", sorted(ENERGY_PAIRS))
def test_energy_inputs_with_a_wrong_batch_are_refused(name):
    args, _ = _inputs(name, torch.float64, torch.Generator().manual_seed(7))
    bad = list(args)
    bad[1] = torch.zeros(B + 1, K)
    with pytest.raises(ValueError, match=losses.LOSS_INPUTS[name][1]):
        _call(name, bad)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_inputs_are_what_the_training_loop_supplies(name):
    from ebmlab.training import resolve_loss

    options = {"sigma": 0.1} if name == "denoising_score_matching" else {}  # a required option
    supplied = tuple(p for p in resolve_loss(name, options).inputs if p != "generator")
    assert losses.LOSS_INPUTS[name] == supplied
