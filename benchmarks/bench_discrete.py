"""Discrete energies: RBM vs scikit-learn's BernoulliRBM on digits, AIS coverage, digit strings.

1. scikit-learn's RBM example protocol (examples/rbm_digits.py): ebmlab's ``RBM(64, 100)``
   trained by PCD-1 (BlockGibbs, SGD lr 0.06, batch 10, 10 epochs) and
   ``sklearn.neural_network.BernoulliRBM`` with the same hyper-parameters on the same data in
   the same process: pseudo-log-likelihood on the training data (scikit-learn's stochastic
   ``score_samples`` estimate for both, and ebmlab's exact all-sites value), RBM features +
   logistic regression (C = 6000) test accuracy, raw-pixel logistic regression, time per
   epoch (``RBM.fit_pcd``; the mean of the 10 against scikit-learn's mean, whose ``fit`` has no
   per-epoch hook; the median too, and one epoch of the unfused BlockGibbs +
   ``contrastive_gradient`` + SGD loop for the record).
2. ``RBM(64, 20)`` on binarised digits, where log Z is exact (2^20 hidden states): AIS
   (100 chains, 2,000 temperatures, base rate = the data's log-odds) for 20 seeds, the
   fraction within 1, 2, 3 standard errors (coverage of the stderr), and the exact test
   log-likelihood.
3. Digit strings (examples/digit_strings.py): per-position classifier vs Chain energy.

Run: ``python benchmarks/bench_discrete.py [--threads 1] [--quick]`` (the thread count holds
for torch and for numpy/scipy's BLAS and OpenMP alike, via threadpoolctl); writes
``benchmarks/results/discrete.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import ebmlab as eb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import digit_strings  # noqa: E402
import rbm_digits  # noqa: E402

from common import RESULTS, machine  # noqa: E402


def rbm_vs_sklearn(quick: bool) -> dict[str, object]:
    from sklearn.neural_network import BernoulliRBM

    x_train, x_test, y_train, y_test = rbm_digits.load_digits(0)
    epochs = 2 if quick else 10
    data = torch.as_tensor(x_train, dtype=torch.float64)
    test = torch.as_tensor(x_test, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    rbm = eb.energies.RBM(64, 100, generator=g).double()
    reference = copy.deepcopy(rbm)  # the unfused loop, one epoch, for the record
    times = rbm_digits.train_pcd(rbm, data, num_epochs=epochs, generator=g)
    kernel_times = rbm_digits.train_pcd(reference, data, num_epochs=1, method="kernel",
                                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pll_random = float(rbm.pseudo_log_likelihood(data, sites="random", generator=g).mean())
        pll_exact = float(rbm.pseudo_log_likelihood(data).mean())
        f_train, f_test = rbm.hidden_probability(data).numpy(), rbm.hidden_probability(test).numpy()
    sk = BernoulliRBM(n_components=100, learning_rate=0.06, batch_size=10, n_iter=epochs,
                      random_state=0)
    start = time.perf_counter()
    sk.fit(x_train)  # fit has no per-epoch hook: its time per epoch is the mean
    sk_epoch = (time.perf_counter() - start) / epochs
    sk_pll = float(sk.score_samples(x_train).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = rbm_digits.features_accuracy(f_train, y_train, f_test, y_test)
        sk_acc = rbm_digits.features_accuracy(sk.transform(x_train), y_train,
                                              sk.transform(x_test), y_test)
        raw_acc = rbm_digits.features_accuracy(x_train, y_train, x_test, y_test)
    return {
        "epochs": epochs,
        "ebmlab_pseudo_log_likelihood": pll_random,
        "ebmlab_pseudo_log_likelihood_all_sites": pll_exact,
        "sklearn_pseudo_log_likelihood": sk_pll,
        "ebmlab_accuracy": acc,
        "sklearn_accuracy": sk_acc,
        "raw_pixel_accuracy": raw_acc,
        "ebmlab_epoch_seconds_median": statistics.median(times),
        "ebmlab_epoch_seconds_mean": statistics.mean(times),
        "ebmlab_epoch_seconds": times,
        "ebmlab_kernel_loop_epoch_seconds": kernel_times[0],
        "sklearn_epoch_seconds_mean": sk_epoch,
        "time_ratio": statistics.mean(times) / sk_epoch,
    }


def ais_coverage(quick: bool) -> dict[str, object]:
    x_train, x_test, _, _ = rbm_digits.load_digits(0)
    train = torch.as_tensor(x_train > 0.5, dtype=torch.float64)
    test = torch.as_tensor(x_test > 0.5, dtype=torch.float64)
    hidden = 12 if quick else 20
    g = torch.Generator().manual_seed(0)
    rbm = eb.energies.RBM(64, hidden, generator=g).double()
    rbm_digits.train_pcd(rbm, train, num_epochs=1 if quick else 5, learning_rate=0.02,
                         generator=g)
    with torch.no_grad():
        start = time.perf_counter()
        exact = float(rbm.log_partition())
        exact_seconds = time.perf_counter() - start
        mean = train.mean(0).clamp(1e-3, 1 - 1e-3)
        base = torch.log(mean) - torch.log1p(-mean)
        runs = []
        start = time.perf_counter()
        for seed in range(5 if quick else 20):
            est = rbm.estimate_log_partition(
                "ais", num_chains=100, num_temperatures=300 if quick else 2000,
                base_visible_bias=base, generator=torch.Generator().manual_seed(seed))
            runs.append((float(est.value), float(est.stderr)))
        ais_seconds = (time.perf_counter() - start) / len(runs)
        importance = rbm.estimate_log_partition("importance", num_chains=100000,
                                                base_visible_bias=base, generator=g)
        test_ll = float(rbm.log_prob(test, log_partition=torch.tensor(exact)).mean())
    z = [abs(v - exact) / s for v, s in runs]
    return {
        "num_hidden": hidden,
        "exact_log_partition": exact,
        "exact_seconds": exact_seconds,
        "ais_runs": runs,
        "ais_seconds_per_run": ais_seconds,
        "ais_within_1_stderr": sum(x < 1 for x in z) / len(z),
        "ais_within_2_stderr": sum(x < 2 for x in z) / len(z),
        "ais_within_3_stderr": sum(x < 3 for x in z) / len(z),
        "importance_100000": (float(importance.value), float(importance.stderr)),
        "test_log_likelihood": test_ll,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # numpy/scipy's BLAS and OpenMP (scikit-learn's side) get the same number of threads.
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    result = {
        "machine": machine(),
        "load_average_at_start": load,
        "rbm_digits": rbm_vs_sklearn(args.quick),
        "ais": ais_coverage(args.quick),
        "digit_strings": digit_strings.main(["--quick"] if args.quick else []),
    }
    result["load_average_at_end"] = " ".join(
        f"{x:.1f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "discrete.json").write_text(json.dumps(
        {"benchmark": "discrete", "date": time.strftime("%Y-%m-%d"), **result}, indent=2))
    r, a, s = result["rbm_digits"], result["ais"], result["digit_strings"]
    print(f"\n| | ebmlab | scikit-learn |\n|---|---|---|\n"
          f"| pseudo-LL after {r['epochs']} epochs (train) | "
          f"{r['ebmlab_pseudo_log_likelihood']:.2f} | {r['sklearn_pseudo_log_likelihood']:.2f} |\n"
          f"| RBM + LR test accuracy | {r['ebmlab_accuracy']:.3f} | {r['sklearn_accuracy']:.3f} |\n"
          f"| time per epoch (s) | {r['ebmlab_epoch_seconds_mean']:.3f} | "
          f"{r['sklearn_epoch_seconds_mean']:.3f} |\n")
    print(f"raw-pixel LR {r['raw_pixel_accuracy']:.3f}; AIS coverage 1/2/3 stderr "
          f"{a['ais_within_1_stderr']:.2f}/{a['ais_within_2_stderr']:.2f}/"
          f"{a['ais_within_3_stderr']:.2f}; strings {s}")


if __name__ == "__main__":
    main()
