"""Demo section: a digits classifier trained as an EBM (JEM): calibration, OOD and samples."""

from __future__ import annotations

from pathlib import Path

import torch

from ebmlab.data.digits import digits
from ebmlab.energies.classifier import ClassifierEnergy
from ebmlab.energies.conv import ConvNet
from ebmlab.metrics import auroc, energy_score, softmax_score
from ebmlab.training.images import (
    ClassGaussians,
    classifier_metrics,
    fit_jem,
    langevin_negatives,
    sample_images,
)

__all__ = ["run"]


def run(out: Path, quick: bool) -> list[str]:
    """Train JEM on the first half of the digits; plot samples, reliability and OOD scores."""
    from ebmlab.plot.figure import save, subplots
    from ebmlab.plot.images import energy_trace, image_grid, ood_histogram, reliability_diagram

    dtype = torch.get_default_dtype()
    train_x, train_y = digits("train", dtype=dtype)
    test_x, test_y = digits("test", dtype=dtype)
    steps, sgld, widths, per_class = (150, 5, (8, 16), 4) if quick else (1000, 10, (16, 32), 8)
    torch.manual_seed(0)
    clf = ClassifierEnergy(ConvNet(1, 8, 10, widths=widths, hidden=64))
    negatives = langevin_negatives((1, 8, 8), num_steps=sgld, buffer_size=2000, dtype=dtype)
    fit_jem(clf, train_x, train_y, num_steps=steps, negatives=negatives, alpha=0.1,
            optimizer=lambda params: torch.optim.Adam(params, lr=3e-3 if quick else 1e-3),
            progress=False, log_every=max(1, steps // 4))
    clf.eval()
    scores = classifier_metrics(clf, test_x, test_y)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(10).repeat_interleave(per_class)
    # Chains start from each class's Gaussian (mean and covariance of its train images,
    # JEM++'s informative start) and run on E(x, y); h = 1 overshoots on E(x, y).
    start = ClassGaussians(train_x, train_y).sample(labels, g)
    samples = sample_images(clf.marginal(), start, labels=labels, num_steps=10 if quick else 50,
                            step_size=0.1, noise=0.005, generator=g)
    with torch.no_grad():
        recognised = float((clf.predict(samples.images) == labels).double().mean())
        logits_in = clf.logits(test_x)
        shuffled = test_x.flatten(1)[:, torch.randperm(64, generator=g)].reshape(test_x.shape)
        logits_out = {"pixel-shuffled": clf.logits(shuffled),
                      "uniform noise": clf.logits(torch.rand(test_x.shape, generator=g,
                                                             dtype=dtype))}

    fig, axes = subplots(3, title="JEM on digits: class-conditional Langevin samples")
    rows = [str(c) for c in range(10)]
    image_grid(start, num_columns=per_class, ax=axes[0], row_labels=rows,
               title="starts: the class's Gaussian")
    image_grid(samples.images, num_columns=per_class, ax=axes[1], row_labels=rows,
               title=f"after {len(samples.energy) - 1} Langevin steps on E(x, y)")
    energy_trace(samples.energy, ax=axes[2], title="the chains' energy E(x, y) over steps")
    save(fig, out / "images_samples.png")
    fig, axes = subplots(1)
    reliability_diagram({"JEM": torch.softmax(logits_in, -1)}, test_y, ax=axes[0],
                        title="reliability on the test half")
    save(fig, out / "images_reliability.png")
    fig, axes = subplots(2, title="OOD scores (in: test digits)")
    ood_histogram(energy_score(logits_in), {k: energy_score(v) for k, v in logits_out.items()},
                  ax=axes[0], title="energy score -F(x)")
    ood_histogram(softmax_score(logits_in), {k: softmax_score(v) for k, v in logits_out.items()},
                  ax=axes[1], title="max softmax")
    save(fig, out / "images_ood.png")
    lines = [
        f"JEM, {steps} steps on 898 digits: test accuracy {scores['accuracy']:.3f}, "
        f"ECE {scores['ece']:.3f}; its own classifier recognises {recognised:.0%} of the "
        "class-conditional samples",
    ]
    for name, logits in logits_out.items():
        lines.append(
            f"OOD {name}: AUROC energy {auroc(energy_score(logits_in), energy_score(logits)):.3f}"
            f", softmax {auroc(softmax_score(logits_in), softmax_score(logits)):.3f}"
        )
    lines.append("figures: images_samples.png, images_reliability.png, images_ood.png")
    return lines
