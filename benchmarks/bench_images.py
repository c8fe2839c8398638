"""Images benchmark on scikit-learn's digits: softmax classifier vs JEM, OOD scores, samples.

Protocol: the first half of the digits (898 images) trains, the second half (899) tests, as
in scikit-learn's classification example. Classes 8 and 9 are held out of training (in-
distribution: digits 0-7); OOD sets are the held-out classes' test images, pixel-shuffled
in-distribution test images (one fixed permutation of the 64 pixels) and uniform noise.

1. Softmax classifier: ConvNet(1, 8, 8 classes, widths (16, 32), hidden 64), cross-entropy,
   Adam 1e-3, batch 64; then the same network trained with the JEM objective
   (eb.training.images.fit_jem: CE + maximum likelihood on F(x) = -logsumexp logits, 10-step
   SGLD negatives from a 2,000-image replay buffer with 5 % re-initialisation, alpha 0.1).
   Test accuracy, ECE (15 bins), AUROC and FPR95 with energy scores (-F(x)) and softmax
   scores (max p(y|x)).
2. Samples: an unconditional ConvEnergy trained by short-run Langevin ML (20 steps, replay
   buffer, energy_l2 1.0), and JEM's class-conditional samples (100 Langevin steps on
   E(x, y) from its buffer): kernel MMD^2 (Gaussian kernel on the 64 pixels, bandwidth the
   median pairwise distance of the test images) to the in-distribution test images, and the
   accuracy the separately trained softmax classifier assigns to the requested classes.

Run: ``python benchmarks/bench_images.py [--quick] [--throughput]`` (one thread).
``--throughput`` times JEM steps at CIFAR-10 scale (synthetic (64, 3, 32, 32) tensors) on
the best device (CUDA when present).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ebmlab.data.digits import digits  # noqa: E402
from ebmlab.energies.classifier import ClassifierEnergy  # noqa: E402
from ebmlab.energies.conv import ConvEnergy, ConvNet  # noqa: E402
from ebmlab.metrics import (  # noqa: E402
    accuracy,
    auroc,
    energy_score,
    expected_calibration_error,
    fpr_at_tpr,
    mmd,
    softmax_score,
)
from ebmlab.training.images import (  # noqa: E402
    fit_image_energy,
    fit_jem,
    langevin_negatives,
    sample_images,
)

from common import write  # noqa: E402

HELD_OUT = (8, 9)
DTYPE = torch.float32


def network(num_classes: int) -> ConvNet:
    return ConvNet(1, 8, num_classes, widths=(16, 32), hidden=64)


def split() -> dict[str, torch.Tensor]:
    train_x, train_y = digits("train", dtype=DTYPE)
    test_x, test_y = digits("test", dtype=DTYPE)
    keep_train = ~torch.isin(train_y, torch.tensor(HELD_OUT))
    keep_test = ~torch.isin(test_y, torch.tensor(HELD_OUT))
    g = torch.Generator().manual_seed(0)
    test_in = test_x[keep_test]
    perm = torch.randperm(64, generator=g)
    return {
        "train_x": train_x[keep_train], "train_y": train_y[keep_train],
        "test_x": test_in, "test_y": test_y[keep_test],
        "held-out classes": test_x[~keep_test],
        "pixel-shuffled": test_in.flatten(1)[:, perm].reshape(test_in.shape),
        "uniform noise": torch.rand(test_in.shape, generator=g, dtype=DTYPE),
    }


def train_softmax(data: dict[str, torch.Tensor], steps: int) -> ClassifierEnergy:
    torch.manual_seed(0)
    clf = ClassifierEnergy(network(10 - len(HELD_OUT)))
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = data["train_x"], data["train_y"]
    for _ in range(steps):
        i = torch.randint(len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(clf.logits(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return clf.eval()


def classifier_rows(name: str, clf: ClassifierEnergy, data: dict[str, torch.Tensor],
                    seconds: float) -> list[dict[str, object]]:
    with torch.no_grad():
        logits = clf.logits(data["test_x"])
        probs = torch.softmax(logits, -1)
        rows = []
        for score_name, score in (("energy", energy_score), ("softmax", softmax_score)):
            row: dict[str, object] = {
                "model": name, "score": score_name,
                "accuracy": accuracy(logits, data["test_y"]),
                "ece": expected_calibration_error(probs, data["test_y"]),
                "train_s": seconds,
            }
            s_in = score(logits)
            for ood in ("held-out classes", "pixel-shuffled", "uniform noise"):
                s_out = score(clf.logits(data[ood]))
                row[f"auroc {ood}"] = auroc(s_in, s_out)
                row[f"fpr95 {ood}"] = fpr_at_tpr(s_in, s_out, 0.95)
            rows.append(row)
    return rows


def buffer_rows(buffer: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    return buffer[torch.randint(len(buffer), (num,), generator=generator)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--throughput", action="store_true",
                        help="also time JEM steps at CIFAR-10 scale on the best device")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    softmax_steps, jem_steps, ebm_steps = (50, 20, 10) if quick else (1000, 1000, 300)
    sgld_jem, sgld_ebm, per_class = (3, 3, 4) if quick else (10, 20, 40)
    load = os.getloadavg()[0]
    data = split()
    began = time.perf_counter()

    start = time.perf_counter()
    softmax = train_softmax(data, softmax_steps)
    rows = classifier_rows("softmax", softmax, data, time.perf_counter() - start)

    torch.manual_seed(0)
    jem = ClassifierEnergy(network(10 - len(HELD_OUT)))
    jem_negatives = langevin_negatives((1, 8, 8), num_steps=sgld_jem, buffer_size=2000,
                                       dtype=DTYPE)
    start = time.perf_counter()
    fit_jem(jem, data["train_x"], data["train_y"], num_steps=jem_steps, batch_size=64,
            negatives=jem_negatives, alpha=0.1, progress=False, log_every=100)
    rows += classifier_rows("JEM", jem.eval(), data, time.perf_counter() - start)

    torch.manual_seed(0)
    ebm = ConvEnergy(1, 8, widths=(16, 32), hidden=64)
    ebm_negatives = langevin_negatives((1, 8, 8), num_steps=sgld_ebm, buffer_size=2000,
                                       dtype=DTYPE)
    start = time.perf_counter()
    fit_image_energy(ebm, data["train_x"], num_steps=ebm_steps, batch_size=64,
                     negatives=ebm_negatives, alpha=1.0, progress=False, log_every=100)
    ebm_seconds = time.perf_counter() - start

    g = torch.Generator().manual_seed(2)
    classes = 10 - len(HELD_OUT)
    labels = torch.arange(classes).repeat_interleave(per_class)
    n = labels.numel()
    start = time.perf_counter()
    conditional = sample_images(jem.marginal(), buffer_rows(jem_negatives.buffer.data, n, g),
                                labels=labels, num_steps=100, generator=g)
    conditional_seconds = time.perf_counter() - start
    unconditional = sample_images(ebm, buffer_rows(ebm_negatives.buffer.data, n, g),
                                  num_steps=50, generator=g)
    test = data["test_x"]
    bandwidth = float(torch.pdist(test.flatten(1).double()).median())
    sample_sets = {
        "train images (floor)": (data["train_x"][:n], None, 0.0),
        "uniform noise (ceiling)": (torch.rand((n, 1, 8, 8), generator=g, dtype=DTYPE), None,
                                    0.0),
        "image EBM (ConvEnergy, buffer + 50 steps)": (unconditional.images, None, ebm_seconds),
        "JEM marginal (buffer)": (buffer_rows(jem_negatives.buffer.data, n, g), None, 0.0),
        "JEM class-conditional (buffer + 100 steps on E(x, y))": (conditional.images, labels,
                                                                  conditional_seconds),
    }
    sample_table = []
    with torch.no_grad():
        for name, (images, wanted, seconds) in sample_sets.items():
            row: dict[str, object] = {"samples": name, "num": n,
                                      "mmd2": mmd(images, test, bandwidth=bandwidth)}
            if wanted is not None:
                row["softmax classifier recognises"] = accuracy(softmax.logits(images), wanted)
                row["JEM's own classifier recognises"] = accuracy(jem.logits(images), wanted)
            row["seconds"] = seconds
            sample_table.append(row)

    notes = (
        f"Digits, first half train / second half test; classes {HELD_OUT} held out (in: "
        f"{len(test)} test digits 0-7; OOD: {len(data['held-out classes'])} held-out-class "
        f"digits, {len(test)} pixel-shuffled, {len(test)} uniform noise: in:out 1:"
        f"{len(data['held-out classes']) / len(test):.2f}, 1:1, 1:1). Scores: higher = in. "
        f"{softmax_steps} softmax steps, {jem_steps} JEM steps ({sgld_jem} SGLD steps each), "
        f"batch 64. One thread; the machine was loaded (1-min load average {load:.1f} on "
        f"{os.cpu_count()} cores at the start); total {time.perf_counter() - began:.0f} s."
    )
    columns = ["model", "score", "accuracy", "ece"] + [
        f"{m} {o}" for o in ("held-out classes", "pixel-shuffled", "uniform noise")
        for m in ("auroc", "fpr95")] + ["train_s"]
    write("images_ood" + ("_quick" if quick else ""), rows, columns, notes)
    write("images_samples" + ("_quick" if quick else ""), sample_table,
          ["samples", "num", "mmd2", "softmax classifier recognises",
           "JEM's own classifier recognises", "seconds"],
          f"MMD^2: Gaussian kernel on 64 pixels, bandwidth {bandwidth:.3f} (median test "
          f"distance), against the {len(test)} in-distribution test images; {per_class} "
          f"samples per class; image EBM: {ebm_steps} steps of {sgld_ebm}-step Langevin ML.")
    if args.throughput:
        write("images_throughput", [throughput()], ["device", "batch", "jem_steps_per_s",
                                                    "images_per_s"])


def throughput() -> dict[str, object]:
    """JEM steps per second at CIFAR-10 scale on synthetic tensors (no download)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.rand(2048, 3, 32, 32, device=device)
    y = torch.randint(10, (2048,), device=device)
    torch.manual_seed(0)
    clf = ClassifierEnergy(ConvNet(3, 32, 10, widths=(64, 128, 256), hidden=256)).to(device)
    neg = langevin_negatives((3, 32, 32), num_steps=20, buffer_size=10000)
    fit_jem(clf, x, y, num_steps=3, batch_size=64, negatives=neg, progress=False)  # warm-up
    steps = 20 if device == "cuda" else 3
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit_jem(clf, x, y, num_steps=steps, batch_size=64, negatives=neg, progress=False,
            seed=1)
    if device == "cuda":
        torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - start)
    return {"device": device, "batch": 64, "jem_steps_per_s": rate, "images_per_s": 64 * rate}


if __name__ == "__main__":
    main()
