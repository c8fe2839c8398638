"""Images benchmark on scikit-learn's digits: softmax classifier vs JEM, OOD scores, samples.

Protocol: the first half of the digits (898 images, all 10 classes) trains, the second half
(899) tests, as in scikit-learn's classification example; the training images are augmented
by their 9 one-pixel shifts (as in scikit-learn's RBM example).

1. Softmax classifier: ConvNet(1, 8, 10, widths (16, 32), hidden 64), cross-entropy, AdamW
   one-cycle, weight decay 1e-2; the same network, optimiser and number of steps with the
   JEM objective (fit_jem: CE + maximum likelihood on F(x) = -logsumexp logits, 10-step SGLD
   negatives from a 2,000-image replay buffer with 5 % re-initialisation, alpha 0.1). Test
   accuracy, ECE (15 bins), AUROC and FPR95 on pixel-shuffled digits and uniform noise, with
   energy (-F(x)) and softmax (max p(y|x)) scores.
2. A separate run with classes 8 and 9 held out of training (8-class models), whose OOD set
   is the held-out classes' test digits.
3. Samples: an unconditional ConvEnergy trained by short-run Langevin ML, JEM's replay
   buffer, and JEM's class-conditional samples (Langevin on E(x, y) from noise, from the
   buffer and from each class's Gaussian fitted to the train half, whose draws alone are a
   reference row): kernel MMD^2 to the test images and the accuracy that independent classifiers
   (the softmax CNN and scikit-learn's RBF SVC) assign to the requested classes.

Run: ``python benchmarks/bench_images.py [--quick] [--throughput] [--only-held-out]`` (one
thread; ``--only-held-out`` runs and writes only the held-out-classes table).
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

from ebmlab.data.digits import digits, shifted  # noqa: E402
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
    ClassGaussians,
    fit_image_energy,
    fit_jem,
    langevin_negatives,
    sample_images,
)

from common import write  # noqa: E402

HELD_OUT = (8, 9)
DTYPE = torch.float32
SAMPLE_STEP, SAMPLE_NOISE = 0.1, 0.005  # class-conditional chains: gradient step h, noise sigma


def network(num_classes: int) -> ConvNet:
    return ConvNet(1, 8, num_classes, widths=(16, 32), hidden=64)


def split(held_out: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Train/test halves without the ``held_out`` classes, their OOD sets, shifted train set."""
    train_x, train_y = digits("train", dtype=DTYPE)
    test_x, test_y = digits("test", dtype=DTYPE)
    keep_train = ~torch.isin(train_y, torch.tensor(held_out, dtype=torch.long))
    keep_test = ~torch.isin(test_y, torch.tensor(held_out, dtype=torch.long))
    g = torch.Generator().manual_seed(0)
    test_in = test_x[keep_test]
    perm = torch.randperm(64, generator=g)
    aug_x, aug_y = shifted(train_x[keep_train], train_y[keep_train])
    return {
        "train_x": train_x[keep_train], "train_y": train_y[keep_train],
        "aug_x": aug_x, "aug_y": aug_y,
        "test_x": test_in, "test_y": test_y[keep_test],
        "held-out classes": test_x[~keep_test],
        "pixel-shuffled": test_in.flatten(1)[:, perm].reshape(test_in.shape),
        "uniform noise": torch.rand(test_in.shape, generator=g, dtype=DTYPE),
    }


def one_cycle(clf: torch.nn.Module, lr: float, steps: int, weight_decay: float
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)


def train_softmax(data: dict[str, torch.Tensor], steps: int) -> ClassifierEnergy:
    torch.manual_seed(0)
    clf = ClassifierEnergy(network(int(data["train_y"].max()) + 1))
    opt, sched = one_cycle(clf, 3e-3, steps, 1e-2)
    g = torch.Generator().manual_seed(0)
    x, y = data["aug_x"], data["aug_y"]
    for _ in range(steps):
        i = torch.randint(len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(clf.logits(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return clf.eval()


def train_jem(data: dict[str, torch.Tensor], steps: int, sgld: int
              ) -> tuple[ClassifierEnergy, torch.Tensor]:
    torch.manual_seed(0)
    clf = ClassifierEnergy(network(int(data["train_y"].max()) + 1))
    negatives = langevin_negatives((1, 8, 8), num_steps=sgld, buffer_size=2000, dtype=DTYPE)
    opt, sched = one_cycle(clf, 2e-3, steps, 1e-2)  # as the softmax model's optimiser
    fit_jem(clf, data["aug_x"], data["aug_y"], num_steps=steps, batch_size=64,
            negatives=negatives, alpha=0.1, optimizer=opt, progress=False, log_every=100,
            fit_options={"scheduler": sched})
    return clf.eval(), negatives.buffer.data


def classifier_rows(name: str, clf: ClassifierEnergy, data: dict[str, torch.Tensor],
                    seconds: float, oods: tuple[str, ...]) -> list[dict[str, object]]:
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
            for ood in oods:
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
    parser.add_argument("--only-held-out", action="store_true",
                        help="run and write only the images_ood_held_out table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    softmax_steps, jem_steps, held_steps, ebm_steps = (
        (50, 20, 20, 10) if quick else (2000, 2000, 2000, 300))
    sgld_jem, sgld_ebm, per_class, sample_steps = (3, 3, 4, 20) if quick else (10, 20, 40, 300)
    short_steps = sample_steps // 6
    load = os.getloadavg()[0]
    began = time.perf_counter()
    suffix = "_quick" if quick else ""
    if args.only_held_out:
        held_out_table(held_steps, sgld_jem, suffix)
        return

    # 1. All 10 classes: accuracy, ECE, OOD = pixel-shuffled digits and uniform noise.
    data = split()
    oods = ("pixel-shuffled", "uniform noise")
    start = time.perf_counter()
    softmax = train_softmax(data, softmax_steps)
    rows = classifier_rows("softmax", softmax, data, time.perf_counter() - start, oods)
    start = time.perf_counter()
    jem, jem_buffer = train_jem(data, jem_steps, sgld_jem)
    rows += classifier_rows("JEM", jem, data, time.perf_counter() - start, oods)

    # 2. A separate run with classes 8 and 9 held out of training: OOD = those classes.
    held_out_table(held_steps, sgld_jem, suffix)

    # 3. Samples: an unconditional image EBM, JEM's buffer and class-conditional chains.
    torch.manual_seed(0)
    ebm = ConvEnergy(1, 8, widths=(16, 32), hidden=64)
    ebm_negatives = langevin_negatives((1, 8, 8), num_steps=sgld_ebm, buffer_size=2000,
                                       dtype=DTYPE)
    start = time.perf_counter()
    fit_image_energy(ebm, data["train_x"], num_steps=ebm_steps, batch_size=64,
                     negatives=ebm_negatives, alpha=1.0, progress=False, log_every=100)
    ebm_seconds = time.perf_counter() - start

    g = torch.Generator().manual_seed(2)
    labels = torch.arange(10).repeat_interleave(per_class)
    n = labels.numel()
    start = time.perf_counter()
    conditional = sample_images(jem.marginal(), n, labels=labels, num_steps=sample_steps,
                                step_size=SAMPLE_STEP, noise=SAMPLE_NOISE, generator=g)
    conditional_seconds = time.perf_counter() - start
    from_buffer = sample_images(jem.marginal(), buffer_rows(jem_buffer, n, g), labels=labels,
                                num_steps=sample_steps, step_size=SAMPLE_STEP,
                                noise=SAMPLE_NOISE, generator=g)
    unconditional = sample_images(ebm, buffer_rows(ebm_negatives.buffer.data, n, g),
                                  num_steps=50, step_size=1.0, noise=0.01, generator=g)
    # Class-conditional chains from the class's Gaussian (fitted to the train half; JEM++'s
    # informative start): the start alone, and after short and long chains on E(x, y).
    g_gauss = torch.Generator().manual_seed(3)  # its own stream: the rows above are unchanged
    gaussian_starts = ClassGaussians(data["train_x"], data["train_y"]).sample(labels, g_gauss)
    from_gaussian = {}
    for k in (short_steps, sample_steps):
        start = time.perf_counter()
        from_gaussian[k] = (sample_images(jem.marginal(), gaussian_starts, labels=labels,
                                          num_steps=k, step_size=SAMPLE_STEP,
                                          noise=SAMPLE_NOISE, generator=g_gauss).images,
                            labels, time.perf_counter() - start)
    test = data["test_x"]
    svc = independent_svc(data)
    bandwidth = float(torch.pdist(test.flatten(1).double()).median())
    sample_sets = {
        "train images (floor)": (data["train_x"][:n], data["train_y"][:n], 0.0),
        "uniform noise (ceiling)": (torch.rand((n, 1, 8, 8), generator=g, dtype=DTYPE), None,
                                    0.0),
        "image EBM (ConvEnergy, buffer + 50 steps)": (unconditional.images, None, ebm_seconds),
        "JEM marginal (replay buffer)": (buffer_rows(jem_buffer, n, g), None, 0.0),
        f"JEM class-conditional (noise + {sample_steps} steps on E(x, y))": (
            conditional.images, labels, conditional_seconds),
        f"JEM class-conditional (buffer + {sample_steps} steps on E(x, y))": (
            from_buffer.images, labels, conditional_seconds),
        "class Gaussian starts alone (no Langevin; reference)": (gaussian_starts, labels, 0.0),
        **{f"JEM class-conditional (class Gaussian + {k} steps on E(x, y))": v
           for k, v in from_gaussian.items()},
    }
    sample_table = []
    with torch.no_grad():
        for name, (images, wanted, seconds) in sample_sets.items():
            row: dict[str, object] = {"samples": name, "num": n,
                                      "mmd2": mmd(images, test, bandwidth=bandwidth)}
            if wanted is not None:
                row["softmax CNN recognises"] = accuracy(softmax.logits(images), wanted)
                predicted = torch.as_tensor(svc.predict(images.flatten(1).double().numpy()))
                row["SVC recognises"] = float((predicted == wanted).double().mean())
                row["JEM's own classifier recognises"] = accuracy(jem.logits(images), wanted)
            row["seconds"] = seconds
            sample_table.append(row)

    notes = (
        f"Digits, first half train (898, all 10 classes; 9 one-pixel shifts of each, 8,082 "
        f"images) / second half test ({len(test)}). OOD: {len(test)} pixel-shuffled test "
        f"digits and {len(test)} uniform-noise images (in:out 1:1). ConvNet widths (16, 32), "
        f"hidden 64; softmax: {softmax_steps} steps, AdamW 3e-3 one-cycle, weight decay 1e-2; "
        f"JEM: {jem_steps} steps, AdamW 2e-3 one-cycle, weight decay 1e-2, {sgld_jem} SGLD "
        f"steps (h 1, sigma 0.01), alpha 0.1; batch 64. Scores: higher = in. One thread; "
        f"1-min load average {load:.1f} on {os.cpu_count()} cores at the start; total "
        f"{time.perf_counter() - began:.0f} s."
    )
    columns = ["model", "score", "accuracy", "ece"] + [
        f"{m} {o}" for o in oods for m in ("auroc", "fpr95")] + ["train_s"]
    write("images_ood" + suffix, rows, columns, notes)
    write("images_samples" + suffix, sample_table,
          ["samples", "num", "mmd2", "softmax CNN recognises", "SVC recognises",
           "JEM's own classifier recognises", "seconds"],
          f"MMD^2: Gaussian kernel on 64 pixels, bandwidth {bandwidth:.3f} (median test "
          f"distance), against the {len(test)} test images; {per_class} samples per class; "
          f"class-conditional chains: Langevin on E(x, y) = -logits[y], h {SAMPLE_STEP}, "
          f"sigma {SAMPLE_NOISE}; recognisers: the softmax CNN above and an RBF SVC "
          f"(gamma 0.001 on 0-16 pixels, scikit-learn's example) trained on the train half "
          f"(samples in [0, 1], times 16 for the SVC); class Gaussian: the mean and "
          f"covariance (+0.01 I) of each class's train images, draws clipped to [0, 1]; "
          f"image EBM: {ebm_steps} steps of {sgld_ebm}-step Langevin ML.")
    if args.throughput:
        write("images_throughput", [throughput()], ["device", "batch", "jem_steps_per_s",
                                                    "images_per_s"])


def held_out_table(held_steps: int, sgld_jem: int, suffix: str) -> None:
    """Softmax and JEM trained without classes 8 and 9; OOD = their test digits."""
    held = split(HELD_OUT)
    start = time.perf_counter()
    held_rows = classifier_rows("softmax", train_softmax(held, held_steps), held,
                                time.perf_counter() - start, ("held-out classes",))
    start = time.perf_counter()
    held_jem, _ = train_jem(held, held_steps, sgld_jem)
    held_rows += classifier_rows("JEM", held_jem, held, time.perf_counter() - start,
                                 ("held-out classes",))
    held_notes = (
        f"Separate run: classes {HELD_OUT} held out of training ({len(held['train_x'])} "
        f"train digits 0-7, shifted x9); in: {len(held['test_x'])} test digits 0-7, OOD: "
        f"{len(held['held-out classes'])} test digits 8-9 (in:out 1:"
        f"{len(held['held-out classes']) / len(held['test_x']):.2f}); softmax and JEM "
        f"{held_steps} steps each (as the 10-class models), otherwise as images_ood. One "
        f"thread; 1-min load average {os.getloadavg()[0]:.1f} at the end."
    )
    write("images_ood_held_out" + suffix, held_rows,
          ["model", "score", "accuracy", "ece", "auroc held-out classes",
           "fpr95 held-out classes", "train_s"], held_notes)


def independent_svc(data: dict[str, torch.Tensor]) -> object:
    """scikit-learn's example classifier: an RBF SVC, gamma 0.001 on 0-16 grey levels."""
    from sklearn.svm import SVC

    class Scaled:  # pixels in [0, 1] -> the example's 0..16 scale
        def __init__(self) -> None:
            self.svc = SVC(gamma=0.001).fit(16 * data["train_x"].flatten(1).double().numpy(),
                                            data["train_y"].numpy())

        def predict(self, x: object) -> object:
            return self.svc.predict(16 * x)

    return Scaled()


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
