"""Digit strings: a per-position classifier against a Chain energy on the same features.

Sequences of 8 noisy scikit-learn digit images whose labels follow a known Markov chain (the
next digit is d + 1 mod 10 with probability 0.6, any digit otherwise). Both models see the
same pixels through a linear layer: the per-position classifier (softmax regression,
cross-entropy) labels each image alone; the ``eb.energies.Chain`` adds a learned 10 x 10
transition energy and is trained as a linear-chain CRF (``eb.losses.crf_nll``) with
``eb.fit``, then decoded exactly by ``eb.infer`` (Viterbi). Reports per-digit and whole-string
accuracy of both on held-out images.

Run: ``python examples/digit_strings.py [--quick] [--out DIR]`` (``--out``: a figure of
decoded strings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ebmlab as eb

LENGTH, NUM_CLASSES, STAY = 8, 10, 0.6


def transition_matrix() -> torch.Tensor:
    """P(next | current): d -> d + 1 (mod 10) with probability 0.6, uniform otherwise."""
    p = torch.full((NUM_CLASSES, NUM_CLASSES), (1 - STAY) / NUM_CLASSES)
    p[torch.arange(NUM_CLASSES), (torch.arange(NUM_CLASSES) + 1) % NUM_CLASSES] += STAY
    return p


def make_strings(images: torch.Tensor, labels: torch.Tensor, num: int, noise: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` strings: features (num, L, 64) and labels (num, L) as floats."""
    p = transition_matrix()
    seq = [torch.randint(NUM_CLASSES, (num,), generator=generator)]
    for _ in range(LENGTH - 1):
        seq.append(torch.multinomial(p[seq[-1]], 1, generator=generator).squeeze(1))
    y = torch.stack(seq, 1)  # (num, L)
    by_class = [torch.nonzero(labels == k).squeeze(1) for k in range(NUM_CLASSES)]
    x = torch.empty(num, LENGTH, images.shape[1], dtype=images.dtype)
    for k in range(NUM_CLASSES):
        where = y == k
        pick = torch.randint(len(by_class[k]), (int(where.sum()),), generator=generator)
        x[where] = images[by_class[k][pick]]
    x = x + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x, y.to(x.dtype)


class Unary(torch.nn.Module):
    """Unary energies -logits of a linear layer on each image: (B, L, 64) -> (B, L, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor | None) -> torch.Tensor:
        assert x is not None
        return -self.linear(x)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from sklearn import datasets

    digits = datasets.load_digits()
    images = torch.as_tensor(digits.data / 16.0, dtype=torch.get_default_dtype())
    labels = torch.as_tensor(digits.target)
    half = images.shape[0] // 2  # train images, then held-out test images
    g = torch.Generator().manual_seed(args.seed)
    num_train, num_test = (200, 200) if args.quick else (2000, 1000)
    steps = 100 if args.quick else 600
    x_train, y_train = make_strings(images[:half], labels[:half], num_train, args.noise, g)
    x_test, y_test = make_strings(images[half:], labels[half:], num_test, args.noise, g)

    torch.manual_seed(args.seed)
    # Per-position classifier: the chain's energy with transitions held at zero is exactly a
    # softmax regression per image, so train that with the same loss and optimiser.
    alone = eb.energies.Chain(Unary(), torch.zeros(NUM_CLASSES, NUM_CLASSES))
    alone.transitions.requires_grad_(False)
    chain = eb.energies.Chain(Unary(), torch.zeros(NUM_CLASSES, NUM_CLASSES))
    results: dict[str, float] = {}
    for name, model in (("per_position", alone), ("chain", chain)):
        params = [p for p in model.parameters() if p.requires_grad]
        eb.fit(model, (x_train, y_train), eb.losses.crf_nll,
               optimizer=torch.optim.Adam(params, lr=0.02), num_steps=steps, batch_size=100,
               progress=False)
        with torch.no_grad():
            decoded = eb.infer(model, x_test).best
        results[f"{name}_digit_accuracy"] = float((decoded == y_test).double().mean())
        results[f"{name}_string_accuracy"] = float((decoded == y_test).all(1).double().mean())
    print(f"per-position classifier: digits {results['per_position_digit_accuracy']:.3f}, "
          f"strings {results['per_position_string_accuracy']:.3f}")
    print(f"chain (CRF + Viterbi):   digits {results['chain_digit_accuracy']:.3f}, "
          f"strings {results['chain_string_accuracy']:.3f}")
    if args.out is not None:
        figure(x_test[:4], y_test[:4], eb.infer(chain, x_test[:4]).best, args.out)
    return results


def figure(x: torch.Tensor, y: torch.Tensor, decoded: torch.Tensor, out: Path) -> None:
    """Four test strings with their true and Viterbi labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(4, LENGTH, figsize=(LENGTH, 4.6))
    for i in range(4):
        for t in range(LENGTH):
            ax = axes[i, t]
            ax.imshow(x[i, t].reshape(8, 8).numpy(), cmap="gray_r")
            ok = int(decoded[i, t]) == int(y[i, t])
            ax.set_title(f"{int(decoded[i, t])}", color="black" if ok else "red", fontsize=9)
            ax.set_axis_off()
    fig.suptitle("Viterbi paths (red: wrong)")
    fig.savefig(out / "digit_strings.png", dpi=100)
    plt.close(fig)
    print(f"figure written to {out / 'digit_strings.png'}")


if __name__ == "__main__":
    main()
