"""A classifier that is also an EBM (JEM) on scikit-learn's 8x8 digits.

Trains a small ConvNet with the JEM objective (cross-entropy on p(y|x) plus maximum likelihood
on F(x) = -logsumexp logits, SGLD negatives from a replay buffer) on the first half of the
digits, then reports test accuracy and calibration, detects pixel-shuffled digits and uniform
noise with the energy score, and draws class-conditional samples by Langevin on E(x, y) started
from each class's Gaussian (the mean and covariance of its training images).
Run: python examples/classifier_ebm_digits.py [--quick] [--steps N] [--sgld-steps K] [--out DIR]
(``--quick``: 150 steps of 5-step SGLD and 20-step sample chains, a smoke run of ~15 s).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (1000)")
    parser.add_argument("--sgld-steps", type=int, default=None, help="SGLD steps (10)")
    parser.add_argument("--out", type=Path, default=None, help="write figures here")
    args = parser.parse_args()
    steps = args.steps or (150 if args.quick else 1000)
    sgld_steps = args.sgld_steps or (5 if args.quick else 10)
    sample_steps = 20 if args.quick else 50
    torch.set_num_threads(1)
    train_x, train_y = digits("train", dtype=torch.float32)
    test_x, test_y = digits("test", dtype=torch.float32)
    torch.manual_seed(0)
    widths = (8, 16) if args.quick else (16, 32)
    clf = ClassifierEnergy(ConvNet(1, 8, 10, widths=widths, hidden=64))
    negatives = langevin_negatives((1, 8, 8), num_steps=sgld_steps, buffer_size=2000,
                                   dtype=torch.float32)
    lr = 3e-3 if args.quick else 1e-3
    fit_jem(clf, train_x, train_y, num_steps=steps, negatives=negatives, alpha=0.1,
            optimizer=lambda params: torch.optim.Adam(params, lr=lr), progress=False,
            log_every=max(1, steps // 10))
    clf.eval()
    scores = classifier_metrics(clf, test_x, test_y)
    print(f"test accuracy {scores['accuracy']:.3f}, ECE {scores['ece']:.3f}")
    g = torch.Generator().manual_seed(0)
    shuffled = test_x.flatten(1)[:, torch.randperm(64, generator=g)].reshape(test_x.shape)
    noise = torch.rand(test_x.shape, generator=g)
    with torch.no_grad():
        logits_in = clf.logits(test_x)
        for name, ood in (("pixel-shuffled", shuffled), ("uniform noise", noise)):
            logits = clf.logits(ood)
            print(f"{name}: AUROC energy {auroc(energy_score(logits_in), energy_score(logits)):.3f}"
                  f", softmax {auroc(softmax_score(logits_in), softmax_score(logits)):.3f}")
    labels = torch.arange(10).repeat_interleave(6)
    start = ClassGaussians(train_x, train_y).sample(labels, g)  # each class's Gaussian (JEM++)
    samples = sample_images(clf.marginal(), start, labels=labels, num_steps=sample_steps,
                            step_size=0.1, noise=0.005, generator=g)  # h = 1 overshoots on E(x, y)
    with torch.no_grad():
        hit = float((clf.predict(samples.images) == labels).double().mean())
    print(f"class-conditional samples recognised as their class: {hit:.0%}")
    if args.out is not None:
        from ebmlab.plot.figure import save, subplots
        from ebmlab.plot.images import energy_trace, image_grid

        fig, axes = subplots(2)
        image_grid(samples.images, num_columns=6, ax=axes[0],
                   row_labels=[str(c) for c in range(10)], title="samples of E(x, y)")
        energy_trace(samples.energy, ax=axes[1])
        print(f"wrote {save(fig, args.out / 'jem_digits_samples.png')}")


if __name__ == "__main__":
    main()
