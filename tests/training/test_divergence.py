"""Divergence: detected from the loss, the gradient, the parameters and the energy gap; rolled
back (default), raised or ignored; a non-finite state is never checkpointed."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import ebmlab as eb
from ebmlab.training import DivergenceError, read_checkpoint
from ebmlab.training.fit import MAX_ROLLBACKS


class SqrtEnergy(eb.Energy):
    """F = sqrt(w^2): a finite value with a NaN gradient at w = 0 (reliability finding F1)."""

    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0]))

    def forward(self, y, x=None):
        return (self.w**2).sqrt().expand(y.shape[0]) + 0 * y.sum(-1)


def test_nan_gradient_at_the_last_step_is_never_checkpointed(tmp_path):
    with pytest.raises(DivergenceError, match="gradient"):
        eb.fit(SqrtEnergy(0.0), torch.randn(64, 2), "energy_loss", num_steps=1,
               progress=False, checkpoint_dir=tmp_path, on_divergence="raise")
    with pytest.raises(eb.training.CheckpointError):
        read_checkpoint(tmp_path)  # nothing was written


def test_nan_gradient_mid_run_keeps_a_finite_last_good_checkpoint(tmp_path):
    e = SqrtEnergy(1.0)  # SGD lr 1 moves w 1 -> 0 at step 1; step 2 has a NaN gradient
    with pytest.raises(DivergenceError) as info:
        eb.fit(e, torch.randn(64, 2), "energy_loss", num_steps=4, progress=False,
               checkpoint_dir=tmp_path, checkpoint_every=1, log_every=1,
               optimizer=torch.optim.SGD(e.parameters(), lr=1.0), on_divergence="raise")
    assert info.value.step == 2
    assert info.value.history is not None
    _, tensors, _ = read_checkpoint(info.value.checkpoint)
    assert torch.isfinite(tensors["model.w"]).all()
    assert float(e.w.detach()) == 0.0  # the optimiser never stepped on the NaN gradient


def test_always_diverging_run_raises_after_the_rollbacks_with_the_history():
    with pytest.raises(DivergenceError, match="rollbacks") as info:
        eb.fit(SqrtEnergy(0.0), torch.randn(64, 2), "energy_loss", num_steps=10,
               progress=False, log_every=2)
    assert len(info.value.history.rollbacks) == MAX_ROLLBACKS


def test_ignore_skips_the_bad_steps():
    e = SqrtEnergy(0.0)
    hist = eb.fit(e, torch.randn(64, 2), "energy_loss", num_steps=6, progress=False,
                  log_every=3, on_divergence="ignore")
    assert float(e.w.detach()) == 0.0 and hist["skipped"][-1] == 6


def _diverging_setup():
    """Noise-started CD without a regulariser at a large learning rate: the gap explodes."""
    torch.manual_seed(0)
    model = eb.energies.MLPEnergy(2, hidden=(32, 32))
    data = eb.data.eight_gaussians(512, generator=torch.Generator().manual_seed(0))
    neg = eb.training.negatives.Sampled(num_steps=2, step_size=0.01, init="noise",
                                        domain=eb.Box([-4.0, -4.0], [4.0, 4.0]))
    return model, data, neg


def test_diverging_run_is_rolled_back_and_ends_finite(tmp_path):
    model, data, neg = _diverging_setup()
    hist = eb.fit(model, data, "contrastive_divergence", negatives=neg, regularizer=None,
                  optimizer=torch.optim.Adam(model.parameters(), lr=0.05), num_steps=200,
                  batch_size=128, log_every=10, progress=False, checkpoint_dir=tmp_path)
    assert len(hist.rollbacks) >= 1
    first = hist.rollbacks[0]
    assert first["restored"] < first["step"] and first["lr"] == pytest.approx(0.025)
    assert hist.final_step == 200
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(v) for v in hist["gap"])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert "rollbacks" in rows[0] and int(rows[-1]["rollbacks"]) == len(hist.rollbacks)
    _, _, meta = read_checkpoint(tmp_path)
    assert len(meta["rollbacks"]) == len(hist.rollbacks)


def test_raise_mode_raises_on_the_same_setup():
    model, data, neg = _diverging_setup()
    with pytest.raises(DivergenceError, match="energy gap|non-finite"):
        eb.fit(model, data, "contrastive_divergence", negatives=neg, regularizer=None,
               optimizer=torch.optim.Adam(model.parameters(), lr=0.05), num_steps=200,
               batch_size=128, log_every=10, progress=False, on_divergence="raise")


def test_bad_on_divergence_is_refused():
    with pytest.raises(ValueError, match="on_divergence"):
        eb.fit(SqrtEnergy(1.0), torch.randn(8, 2), "energy_loss", num_steps=1,
               on_divergence="retry")


def _runaway_recovery_likelihood(on_divergence):
    """Unadjusted recovery Langevin at 1.9 sigma^2 (the edge of stability) on a checkerboard:
    the chains' energies run away (the loss, minus their gap to the data, falls ~3x every 5
    steps to -2e5 by step 100) while the loss stays finite and there is no energy gap to see."""
    torch.manual_seed(0)
    model = eb.energies.MLPEnergy(2, hidden=(32, 32))
    data = eb.data.checkerboard(512, generator=torch.Generator().manual_seed(0))
    return eb.fit(model, data, "diffusion_recovery_likelihood",
                  loss_options={"metropolis": False, "step_size": 1.9},
                  optimizer=torch.optim.Adam(model.parameters(), lr=0.01), num_steps=100,
                  batch_size=64, log_every=5, progress=False, on_divergence=on_divergence)


def test_runaway_without_negatives_is_seen_by_the_gradient_norm_and_rolled_back():
    hist = _runaway_recovery_likelihood("rollback")
    assert "gap" not in hist.columns  # nothing for the energy-gap check to see
    assert len(hist.rollbacks) >= 1
    first = hist.rollbacks[0]
    assert "gradient norm" in first["reason"] and first["restored"] < first["step"] <= 70
    assert first["lr"] == pytest.approx(0.005)
    assert hist.final_step == 100 and hist["rollbacks"][-1] == len(hist.rollbacks)
    ignored = _runaway_recovery_likelihood("ignore")  # the same run without the checks
    assert not ignored.rollbacks and abs(ignored["loss"][-1]) > 10 * abs(hist["loss"][-1])


def test_runaway_without_negatives_raises_in_raise_mode():
    with pytest.raises(DivergenceError, match="gradient norm"):
        _runaway_recovery_likelihood("raise")
