"""eb.fit: CD learns a Gaussian, divergence is caught, errors are clear, callbacks and CSV work."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import ebmlab as eb
from ebmlab.training import Callback, DivergenceError, Evaluate, read_checkpoint
from ebmlab.training.negatives import MostOffending, Sampled, Shuffled


def _standardised(n, mean, sd, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 1, generator=g)
    return (y - y.mean()) / y.std(unbiased=False) * sd + mean


def test_cd_recovers_mean_and_variance_of_a_gaussian():
    # Data with empirical mean exactly 2 and variance exactly v = 0.25. MALA negatives leave
    # the model's Gibbs law invariant, so the CD gradient vanishes exactly when the model's
    # mean and variance 1/a match the data's: mu = 2, a = 1/v = 4.
    n, v = 2000, 0.25
    y = _standardised(n, 2.0, math.sqrt(v), seed=0)
    model = eb.energies.Quadratic(torch.eye(1) * 2.0, mean=[0.0])
    opt = torch.optim.Adam(model.parameters(), lr=0.05, betas=(0.9, 0.9))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 300)
    negatives = Sampled(num_steps=10, sampler=eb.samplers.MALA(0.05))
    eb.fit(model, y, "contrastive_divergence", negatives=negatives, optimizer=opt,
           scheduler=sched, num_steps=300, batch_size=n, progress=False, seed=1)
    # Noise of one step's fixed point: the negatives' sample variance has sd v*sqrt(2/n), and
    # dv/da = -v/a, so a is pinned to within a*sqrt(2/n) = 0.13 per step; Adam averages over
    # >= 10 steps as the learning rate anneals -> sd <= 0.04 (1 %); allow 4 sd = 4 %.
    # The mean: sd sqrt(v/n) = 0.011 per step, averaged likewise -> 0.004; allow 0.02.
    assert abs(float(model.mean.detach()) - 2.0) < 0.02
    assert abs(1.0 / float(model.precision.detach()) / v - 1.0) < 0.04


def test_loss_without_negatives_and_history_columns(tmp_path):
    # The energy loss on a Quadratic with a learnable mean pulls the mean to the data mean
    # (gradient a * (mu - mean(y))); full batch and plain GD converge geometrically.
    y = _standardised(64, -1.0, 0.3, seed=2)
    model = eb.energies.Quadratic(torch.eye(1), mean=[0.0])
    model.precision.requires_grad_(False)
    hist = eb.fit(model, y, "energy_loss", optimizer=torch.optim.SGD([model.mean], lr=0.5),
                  num_steps=40, log_every=10, checkpoint_dir=tmp_path, checkpoint_every=20,
                  progress=False)
    assert abs(float(model.mean.detach()) + 1.0) < 1e-6
    assert hist["step"] == [10, 20, 30, 40]
    # no negatives: no gap, left out of the records and the CSV (not NaN)
    assert "gap" not in hist.columns and "energy_neg" not in hist.columns
    assert hist["loss"][-1] < hist["loss"][0]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert [float(r["loss"]) for r in rows] == hist["loss"]  # floats round-trip exactly
    assert "gap" not in rows[0] and "nan" not in (tmp_path / "metrics.csv").read_text()


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def exploding(e_pos):
        calls["n"] += 1
        bad = math.nan if calls["n"] == 7 else 0.0
        return e_pos.mean() + bad

    model = eb.energies.Quadratic(torch.eye(1))
    with pytest.raises(DivergenceError, match="diverged at step 7") as info:
        eb.fit(model, torch.randn(16, 1), exploding, num_steps=20, checkpoint_dir=tmp_path,
               checkpoint_every=3, log_every=5, progress=False, on_divergence="raise")
    assert info.value.step == 7
    step, tensors, _ = read_checkpoint(tmp_path)
    assert step == 6 and str(info.value.checkpoint).endswith("step-000000006.json")
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))


def test_hinge_with_most_offending_and_shuffled_negatives_opens_the_margin():
    # y^2 = x: an energy (y^2 - w x)^2 with w learnable; hinge pushes the offending answers
    # up. The data has w = 1; the model starts at w = 0.2 and must move towards 1.
    x, y = eb.data.two_branch(128, scale=0.01, generator=torch.Generator().manual_seed(0))

    class Branches(eb.Energy):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.2))
            self.y_shape = (1,)

        def forward(self, y, x=None):
            return ((y**2 - self.w * x) ** 2).sum(-1)

    for negatives in (MostOffending(0.5, num_starts=4, max_steps=150, num_boundary=2),
                      Shuffled()):
        model = Branches()
        eb.fit(model, (x, y), "hinge", negatives=negatives, loss_options={"margin": 1.0},
               optimizer=torch.optim.Adam(model.parameters(), lr=0.1), num_steps=15,
               batch_size=32, progress=False)
        assert float(model.w.detach()) > 0.6


def test_nce_and_score_matching_run_through_fit():
    y = eb.data.eight_gaussians(256, generator=torch.Generator().manual_seed(0))
    for loss, kwargs in (("nce", {}), ("denoising_score_matching", {"sigma": 0.1})):
        torch.manual_seed(0)
        model = eb.energies.MLPEnergy(2, hidden=(16,))
        negatives = eb.training.negatives.Gaussian(2.0) if loss == "nce" else None
        hist = eb.fit(model, y, loss, negatives=negatives, loss_options=kwargs, num_steps=20,
                      batch_size=64, log_every=10, progress=False)
        assert len(hist) == 2 and all(math.isfinite(v) for v in hist["loss"])


def test_evaluate_callback_and_custom_callback():
    seen = []

    class Spy(Callback):
        def on_log(self, run, record):
            seen.append((run.step, record.get("e0")))

    model = eb.energies.Quadratic(torch.eye(1))
    ev = Evaluate(lambda f: {"e0": float(f(torch.zeros(1, 1)))}, every=4)
    hist = eb.fit(model, torch.randn(8, 1), "energy_loss", num_steps=8, log_every=2,
                  callbacks=[ev, Spy()], progress=False)
    assert [s for s, _ in seen] == [2, 4, 6, 8]
    assert [e is not None for _, e in seen] == [False, True, False, True]
    assert "e0" in hist.columns


def test_bad_arguments_are_refused():
    model = eb.energies.Quadratic(torch.eye(1))
    y = torch.randn(8, 1)
    # a contrastive loss without negatives= gets the default (persistent Langevin chains)
    eb.fit(model, y, "hinge", loss_options={"margin": 1.0}, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        eb.fit(model, y, "hingee", num_steps=1, progress=False)
    with pytest.raises(ValueError, match="no option 'margn'"):
        eb.fit(model, y, "hinge", negatives=Shuffled(), loss_options={"margn": 1.0},
               num_steps=1, progress=False)
    with pytest.raises(ValueError, match="log density"):
        eb.fit(model, y, "nce", negatives=Shuffled(), num_steps=1, progress=False)
    with pytest.raises(TypeError, match="data must be"):
        eb.fit(model, [y], "energy_loss", num_steps=1, progress=False)
    with pytest.raises(ValueError, match="rows"):
        eb.fit(model, (torch.randn(3, 1), y), "energy_loss", num_steps=1, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        eb.fit(model, y, "energy_loss", num_steps=-1, progress=False)


def test_tensorboard_logger_needs_tensorboard(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            eb.training.TensorBoardLogger(tmp_path)
    else:  # pragma: no cover - only where tensorboard is installed
        logger = eb.training.TensorBoardLogger(tmp_path)
        eb.fit(eb.energies.Quadratic(torch.eye(1)), torch.randn(8, 1), "energy_loss",
               num_steps=2, log_every=1, callbacks=[logger], progress=False)
        assert any(tmp_path.iterdir())
