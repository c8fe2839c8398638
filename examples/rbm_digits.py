"""RBMs on scikit-learn's digits: PCD training, RBM features + logistic regression, exact log Z.

Two parts (the data ship with scikit-learn; nothing is downloaded):

1. scikit-learn's RBM example protocol: the 8x8 digits nudged by one pixel in 4 directions
   (5x data), min-max scaled to [0, 1], an 80/20 split, ``RBM(64, 100)`` trained by persistent
   contrastive divergence (one block Gibbs step per batch of 10, SGD with learning rate 0.06,
   10 epochs; ``RBM.fit_pcd``, the fused loop), the pseudo-log-likelihood per epoch, and the
   RBM's hidden probabilities as features of a logistic regression (C = 6000) against the raw
   pixels.
2. An RBM with 20 hidden units on binarised digits, where log Z is exact (2^20 hidden states):
   AIS and importance-sampling estimates against it, and the exact test log-likelihood.

Run: ``python examples/rbm_digits.py [--quick] [--out DIR]`` (``--out`` writes the filters and
samples of the chains as PNG figures).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import ebmlab as eb


def nudge_dataset(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the 8x8 images and their copies shifted by one pixel left, right, up and down."""
    from scipy.ndimage import convolve

    directions = [
        [[0, 1, 0], [0, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 1, 0]],
    ]

    def shift(image: np.ndarray, weights: list[list[int]]) -> np.ndarray:
        return convolve(image.reshape((8, 8)), mode="constant", weights=weights).ravel()

    x = np.concatenate([x] + [np.apply_along_axis(shift, 1, x, w) for w in directions])
    y = np.concatenate([y for _ in range(5)], axis=0)
    return x, y


def load_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's RBM example data: nudged, min-max scaled, split 80/20 (``seed``)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import minmax_scale

    digits = datasets.load_digits()
    x = np.asarray(digits.data, "float32")
    x, y = nudge_dataset(x, digits.target)
    x = minmax_scale(x, feature_range=(0, 1))
    return train_test_split(x, y, test_size=0.2, random_state=seed)


def train_pcd(
    rbm: eb.energies.RBM,
    data: torch.Tensor,
    *,
    learning_rate: float = 0.06,
    num_epochs: int = 10,
    batch_size: int = 10,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    method: str = "fused",
) -> list[float]:
    r"""Train ``rbm`` by PCD-1 with plain SGD, as scikit-learn's ``BernoulliRBM.fit`` does.

    ``method="fused"`` (default) is :meth:`eb.energies.RBM.fit_pcd`: the whole loop in eight
    in-place tensor operations per batch. ``"kernel"`` is the same algorithm written with the
    library's pieces: ``batch_size`` persistent chains advance one
    :class:`eb.samplers.BlockGibbs` step per batch (the state's cached hidden input is that
    of the previous parameters, so the hidden draw of a step uses them, exactly like
    scikit-learn's stored ``h_samples_``), :meth:`RBM.contrastive_gradient` sets the gradient
    of :math:`\overline{F(v_{data})} - \overline{F(v_{chains})}` in closed form and
    ``torch.optim.SGD`` steps; ``"autograd"`` differentiates that loss instead. All three use
    the same random draws and agree up to rounding. Batches are taken in order (the data are
    already shuffled by the split), again as scikit-learn does.

    Returns:
        The seconds taken by each epoch.
    """
    if method == "fused":
        return rbm.fit_pcd(data, learning_rate=learning_rate, num_epochs=num_epochs,
                           batch_size=batch_size, generator=generator, on_epoch=on_epoch)
    if method not in ("kernel", "autograd"):
        raise ValueError(f"method must be 'fused', 'kernel' or 'autograd'; got {method!r}")
    free = rbm.marginal()
    kernel = eb.samplers.BlockGibbs()
    state = kernel.init(torch.zeros(batch_size, rbm.num_visible, dtype=data.dtype), rbm)
    optimizer = torch.optim.SGD(rbm.parameters(), lr=learning_rate)
    n = data.shape[0] // batch_size * batch_size
    batches = list(data[:n].split(batch_size))
    times = []
    for epoch in range(num_epochs):
        start = time.perf_counter()
        for v in batches:
            state, _ = kernel.step(state, rbm, generator=generator)
            if method == "autograd":
                loss = free.forward(v).mean() - free.forward(state.position).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            else:  # the same gradient in closed form
                rbm.contrastive_gradient(v, state.position, state.hidden_input)
            optimizer.step()
        times.append(time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(epoch + 1, times[-1])
    return times


def features_accuracy(train_features: np.ndarray, y_train: np.ndarray,
                      test_features: np.ndarray, y_test: np.ndarray,
                      max_iter: int = 1000) -> float:
    """Test accuracy of a logistic regression (C = 6000, as scikit-learn's example)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=6000.0, max_iter=max_iter)
    model.fit(train_features, y_train)
    return float(model.score(test_features, y_test))


def part_one(quick: bool, seed: int, out: Path | None) -> dict[str, object]:
    x_train, x_test, y_train, y_test = load_digits(seed)
    epochs = 2 if quick else 10
    if quick:
        x_train, y_train = x_train[:1000], y_train[:1000]
    data = torch.as_tensor(x_train, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    rbm = eb.energies.RBM(64, 100, generator=g).double()
    pll: list[float] = []

    def on_epoch(epoch: int, seconds: float) -> None:
        with torch.no_grad():
            value = float(rbm.pseudo_log_likelihood(data, sites="random", generator=g).mean())
        pll.append(value)
        print(f"[ebmlab RBM] epoch {epoch}, pseudo-likelihood = {value:.2f}, {seconds:.2f} s")

    times = train_pcd(rbm, data, num_epochs=epochs, generator=g, on_epoch=on_epoch)
    with torch.no_grad():
        f_train = rbm.hidden_probability(data).numpy()
        f_test = rbm.hidden_probability(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a quick run stops the regression early
        acc = features_accuracy(f_train, y_train, f_test, y_test, 100 if quick else 1000)
    print(f"RBM features + logistic regression: test accuracy {acc:.3f}")
    if out is not None:
        samples = eb.sample(rbm, torch.zeros(16, 64, dtype=torch.float64),
                            eb.samplers.BlockGibbs(), 1000, thin=1000, generator=g).samples[-1]
        figures(rbm, samples, out)
    return {"pseudo_log_likelihood": pll, "accuracy": acc, "epoch_seconds": times}


def figures(rbm: eb.energies.RBM, samples: torch.Tensor, out: Path) -> None:
    """Write the first 100 filters and samples of 16 chains as PNG images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for name, images, rows in (("rbm_filters.png", rbm.weight.detach().T, 10),
                               ("rbm_samples.png", samples, 4)):
        fig, axes = plt.subplots(rows, math.ceil(images.shape[0] / rows),
                                 figsize=(6, 6 * rows / 10 + 1.5 * (rows < 10)))
        for ax, image in zip(axes.flat, images, strict=False):
            ax.imshow(image.reshape(8, 8).numpy(), cmap="gray_r", interpolation="nearest")
            ax.set_axis_off()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
    print(f"figures written to {out}")


def part_two(quick: bool, seed: int) -> dict[str, float]:
    """H = 20 on binarised digits: exact log Z vs AIS and importance sampling, exact test LL."""
    x_train, x_test, _, _ = load_digits(seed)
    train = torch.as_tensor(x_train > 0.5, dtype=torch.float64)
    test = torch.as_tensor(x_test > 0.5, dtype=torch.float64)
    hidden = 12 if quick else 20
    g = torch.Generator().manual_seed(seed)
    rbm = eb.energies.RBM(64, hidden, generator=g).double()
    train_pcd(rbm, train[:2000] if quick else train, num_epochs=1 if quick else 5,
              learning_rate=0.02, generator=g)
    with torch.no_grad():
        start = time.perf_counter()
        exact = float(rbm.log_partition())
        exact_seconds = time.perf_counter() - start
        mean = train.mean(0).clamp(1e-3, 1 - 1e-3)
        base = torch.log(mean) - torch.log1p(-mean)  # the data's log-odds: the usual base rate
        ais = rbm.estimate_log_partition("ais", num_chains=100,
                                         num_temperatures=300 if quick else 2000,
                                         base_visible_bias=base, generator=g)
        importance = rbm.estimate_log_partition("importance", num_chains=10000,
                                                base_visible_bias=base, generator=g)
        test_ll = float(rbm.log_prob(test, log_partition=torch.tensor(exact)).mean())
    print(f"H = {hidden}: exact log Z = {exact:.3f} ({exact_seconds:.2f} s); "
          f"AIS {float(ais.value):.3f} ± {float(ais.stderr):.3f}; "
          f"importance {float(importance.value):.3f} ± {float(importance.stderr):.3f}; "
          f"exact test log-likelihood {test_ll:.2f} nats per image")
    return {"num_hidden": hidden, "exact_log_partition": exact, "exact_seconds": exact_seconds,
            "ais": float(ais.value), "ais_stderr": float(ais.stderr),
            "importance": float(importance.value),
            "importance_stderr": float(importance.stderr), "test_log_likelihood": test_ll}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for figures")
    args = parser.parse_args(argv)
    return {"pcd": part_one(args.quick, args.seed, args.out),
            "exact": part_two(args.quick, args.seed)}


if __name__ == "__main__":
    main()
