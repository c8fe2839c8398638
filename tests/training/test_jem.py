"""JEM hybrid training and the image recipes through eb.fit: losses fall, exact resume, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebmlab.data.digits import digits
from ebmlab.energies.classifier import ClassifierEnergy
from ebmlab.energies.conv import ConvEnergy, ConvNet
from ebmlab.training.images import (
    ClassGaussians,
    MarginalNegatives,
    classifier_metrics,
    fit_image_energy,
    fit_jem,
    langevin_negatives,
    sample_images,
)

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def subset():
    images, labels = digits("train", dtype=torch.float64)
    return images[:96], labels[:96]


def _classifier(seed=0):
    torch.manual_seed(seed)
    return ClassifierEnergy(ConvNet(1, 8, 10, widths=(8,), hidden=32))


def _negatives(num_steps=5):
    return langevin_negatives((1, 8, 8), num_steps=num_steps, buffer_size=128,
                              dtype=torch.float64)


def _ml_gap(clf, images, noise):
    """F(data) - F(uniform noise): the maximum-likelihood term against a fixed reference."""
    with torch.no_grad():
        f = clf.marginal()
        return float(f(images).mean() - f(noise).mean())


def test_jem_lowers_both_losses(subset):
    images, labels = subset
    clf = _classifier()
    noise = torch.rand((96, 1, 8, 8), generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)
    before = classifier_metrics(clf, images, labels)["cross_entropy"], _ml_gap(clf, images, noise)
    hist = fit_jem(clf, images, labels, num_steps=30, batch_size=32, negatives=_negatives(),
                   optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), progress=False, log_every=10)
    after = classifier_metrics(clf, images, labels)["cross_entropy"], _ml_gap(clf, images, noise)
    assert after[0] < before[0] - 0.3, (before, after)  # cross-entropy
    assert after[1] < before[1] - 0.3, (before, after)  # F(data) falls below F(noise)
    assert hist.final_step == 30 and len(hist) == 3
    # The negatives are scored by the marginal F (is_marginal): energy_neg is finite and the
    # loss is E(x, y) - F(x') exactly (generative_weight 1, alpha 0).
    for r in hist.records:
        assert r["loss"] == pytest.approx(r["energy_pos"] - r["energy_neg"], abs=1e-9)


def test_jem_resumes_bit_identically(subset, tmp_path):
    images, labels = subset

    def run(folder, num_steps):
        clf = _classifier()
        hist = fit_jem(clf, images, labels, num_steps=num_steps, batch_size=32,
                       negatives=_negatives(3), alpha=0.1, generative_weight=0.5,
                       checkpoint_dir=str(folder), seed=3, progress=False, log_every=2,
                       fit_options={"checkpoint_every": 2})
        return clf, hist

    straight, hist_a = run(tmp_path / "a", 6)
    run(tmp_path / "b", 4)  # interrupted after 4 steps ...
    resumed, hist_b = run(tmp_path / "b", 6)  # ... and continued from its checkpoint
    assert hist_b.resumed_from == 4
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    assert hist_a.records[-1]["loss"] == hist_b.records[-1]["loss"]


def test_marginal_negatives_drop_x_and_keep_the_buffer_state():
    seen = {}

    class Inner:
        buffer = "b"

        def __call__(self, energy, y, x=None, *, generator=None):
            seen["x"] = x
            return y

        def state_dict(self):
            return {"data": torch.zeros(1)}

        def load_state_dict(self, state):
            seen["state"] = state

    neg = MarginalNegatives(Inner())
    assert neg.is_marginal and neg.buffer == "b"
    neg(None, torch.zeros(2, 1), torch.ones(2, 1))
    assert seen["x"] is None
    neg.load_state_dict(neg.state_dict())
    assert set(seen["state"]) == {"data"}


def test_image_energy_recipe_and_samples(subset):
    images, _ = subset
    torch.manual_seed(0)
    f = ConvEnergy(1, 8, widths=(4,), hidden=8)
    hist = fit_image_energy(f, images, num_steps=6, batch_size=32, negatives=_negatives(3),
                            progress=False, log_every=3)
    assert hist.final_step == 6
    assert all(torch.isfinite(torch.tensor(hist["loss"])))
    out = sample_images(f, 4, num_steps=5, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (4, 1, 8, 8) and out.energy.shape == (6, 4)
    assert float(out.images.min()) >= 0 and float(out.images.max()) <= 1


def test_class_conditional_samples_lower_their_energy():
    clf = _classifier()
    labels = torch.arange(10)
    g = torch.Generator().manual_seed(0)
    out = sample_images(clf.marginal(), 10, labels=labels, num_steps=20, step_size=0.5,
                        noise=1e-4, generator=g)
    assert out.energy.shape == (21, 10)
    # With negligible noise the chains descend E(x, y): the final energy is below the start.
    assert bool((out.energy[-1] < out.energy[0]).all())
    # The trace is E(x, y) of the requested class.
    with torch.no_grad():
        assert torch.allclose(out.energy[-1], clf(labels.double().unsqueeze(-1), x=out.images))


def test_class_gaussians_match_the_class_statistics(subset):
    images, labels = subset
    starts = ClassGaussians(images, labels)
    assert starts.classes.tolist() == list(range(10)) and starts.means.shape == (10, 64)
    g = torch.Generator().manual_seed(0)
    draws = starts.sample(torch.full((4000,), 3), g)
    assert draws.shape == (4000, 1, 8, 8) and draws.dtype == images.dtype
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1
    # Clipping moves the mean a little; the draws are near class 3's mean, far from the others'.
    distance = (draws.flatten(1).mean(0) - starts.means).norm(dim=1)
    assert int(distance.argmin()) == 3 and float(distance[3]) < 0.5 * float(distance.sort()[0][1])
    a = starts(5, torch.Generator().manual_seed(1))
    assert torch.equal(a, starts(5, torch.Generator().manual_seed(1)))  # the generator only
    with pytest.raises(ValueError, match=r"fitted classes .*; got \[10\]"):
        starts.sample(torch.tensor([10]))
    with pytest.raises(ValueError, match=r"at least 2 images; classes \[0\]"):
        ClassGaussians(images[:3], torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"shape \(N,\) = \(3,\); got \(2,\)"):
        ClassGaussians(images[:3], torch.tensor([0, 1]))


def test_informative_negatives_start_from_the_class_gaussians(subset):
    images, labels = subset
    starts = ClassGaussians(images, labels)
    neg = langevin_negatives((1, 8, 8), num_steps=0, buffer_size=64, init=starts,
                             dtype=torch.float64)
    out = neg(None, images[:8], generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(neg.buffer.data, starts(64, g))  # filled from init, the same stream
    assert out.shape == (8, 1, 8, 8)
    with pytest.raises(TypeError, match="init"):
        langevin_negatives((1, 8, 8), init="gaussian")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images": torch.rand(8, 1, 8, 7)}, ValueError, r"\(B, 1, 8, 8\)"),
        ({"images": torch.rand(8, 64)}, ValueError, r"\(N, C, H, W\)"),
        ({"labels": torch.full((8,), 10)}, ValueError, r"0 \.\. 9"),
        ({"labels": torch.zeros(7, dtype=torch.long)}, ValueError, r"\(N,\) = \(8,\)"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"classifier": ConvEnergy(1, 8)}, TypeError, "ClassifierEnergy"),
    ],
)
def test_bad_inputs_are_refused(kwargs, error, match):
    args = {"classifier": _classifier(), "images": torch.rand(8, 1, 8, 8),
            "labels": torch.zeros(8, dtype=torch.long)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit_jem(args.pop("classifier"), args.pop("images"), args.pop("labels"), num_steps=1,
                progress=False, **args)


def test_sample_images_refuses_bad_labels():
    clf = _classifier()
    with pytest.raises(ValueError, match=r"0 \.\. 9"):
        sample_images(clf.marginal(), 2, labels=torch.tensor([0, 11]), num_steps=1)
    with pytest.raises(ValueError, match=r"\(N,\) = \(2,\)"):
        sample_images(clf.marginal(), 2, labels=torch.tensor([0]), num_steps=1)


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "classifier_ebm_digits.py"), "--steps", "3",
         "--sgld-steps", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and (tmp_path / "jem_digits_samples.png").exists()


@pytest.mark.slow
def test_demo_section_quick(tmp_path):
    from ebmlab.demo.images import run

    lines = run(tmp_path, quick=True)
    assert any("AUROC energy" in line for line in lines)
    for name in ("images_samples.png", "images_reliability.png", "images_ood.png"):
        assert (tmp_path / name).exists()
