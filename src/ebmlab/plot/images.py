"""Image figures: sample grids, chains' energy over steps, reliability diagrams, OOD histograms."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ebmlab.plot.figure import axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["image_grid", "energy_trace", "reliability_diagram", "ood_histogram"]


def image_grid(
    images: Tensor,
    *,
    num_columns: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    row_labels: list[str] | None = None,
) -> Axes:
    """Draw images ``(N, C, H, W)`` (pixels in [0, 1]) as one tiled grid, row by row.

    Grey-scale for one channel, RGB for three. Lay class-conditional samples out as
    ``num_columns`` samples per class to get one row per class (``row_labels`` names them).

    Example:
        >>> import torch, ebmlab as eb
        >>> from ebmlab.plot.images import image_grid
        >>> ax = image_grid(torch.rand(6, 1, 8, 8), num_columns=3, row_labels=["a", "b"])
        >>> ax.get_yticklabels()[1].get_text()
        'b'
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, C, H, W) with C in (1, 3); got {got}")
    n, c, h, w = images.shape
    cols = num_columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 1
    canvas = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, image in enumerate(images.detach().float().clamp(0, 1).cpu()):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        canvas[:, top : top + h, left : left + w] = image
    ax = axes_or_new(ax, (max(3.0, 0.5 * cols), max(3.0, 0.5 * rows)))
    if c == 1:
        ax.imshow(canvas[0].numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(row_labels))])
        ax.set_yticklabels(row_labels)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def energy_trace(
    energy: Tensor, *, ax: Axes | None = None, title: str = "chains' energy", label: str = ""
) -> Axes:
    """Plot the energy of Langevin chains over steps: ``energy (T + 1, N)``, mean and 10-90 %.

    Example:
        >>> import torch
        >>> from ebmlab.plot.images import energy_trace
        >>> len(energy_trace(torch.randn(11, 5)).lines)
        1
    """
    if not isinstance(energy, Tensor) or energy.ndim != 2:
        raise ValueError("energy must have shape (T + 1, N) (e.g. ImageSamples.energy)")
    e = energy.detach().double().cpu()
    steps = torch.arange(e.shape[0]).numpy()
    ax = axes_or_new(ax)
    line = ax.plot(steps, e.mean(1).numpy(), label=label or None)[0]
    lo, hi = torch.quantile(e, torch.tensor([0.1, 0.9], dtype=e.dtype), dim=1)
    ax.fill_between(steps, lo.numpy(), hi.numpy(), alpha=0.2, color=line.get_color())
    ax.set_xlabel("Langevin step")
    ax.set_ylabel("energy")
    ax.set_title(title)
    if label:
        ax.legend()
    return ax


def reliability_diagram(
    probs: Mapping[str, Tensor] | Tensor,
    labels: Tensor,
    *,
    num_bins: int = 15,
    ax: Axes | None = None,
    title: str = "reliability",
) -> Axes:
    """Plot accuracy against confidence per bin (one line per model), with each model's ECE.

    Args:
        probs: predicted probabilities ``(N, C)``, or a mapping name -> probabilities.
        labels: true classes ``(N,)``.
        num_bins: equal-width confidence bins.

    Example:
        >>> import torch
        >>> from ebmlab.plot.images import reliability_diagram
        >>> p = torch.softmax(torch.randn(50, 3), -1)
        >>> ax = reliability_diagram({"a": p}, torch.randint(3, (50,)), num_bins=5)
        >>> ax.get_legend().get_texts()[1].get_text().startswith("a")
        True
    """
    from ebmlab.metrics import expected_calibration_error, reliability

    models = {"model": probs} if isinstance(probs, Tensor) else dict(probs)
    ax = axes_or_new(ax)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, p in models.items():
        table = reliability(p, labels, num_bins)
        ece = expected_calibration_error(p, labels, num_bins)
        keep = table["count"] > 0
        ax.plot(table["confidence"][keep].cpu().numpy(), table["accuracy"][keep].cpu().numpy(),
                marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return ax


def ood_histogram(
    scores_in: Tensor,
    scores_out: Mapping[str, Tensor],
    *,
    ax: Axes | None = None,
    title: str = "OOD scores",
    bins: int = 40,
) -> Axes:
    """Overlay histograms of in-distribution scores and of each OOD set (higher = in), with AUROC.

    Example:
        >>> import torch
        >>> from ebmlab.plot.images import ood_histogram
        >>> ax = ood_histogram(torch.tensor([2.0, 3.0]), {"noise": torch.tensor([0.0, 2.0])})
        >>> ax.get_legend().get_texts()[1].get_text()
        'noise (AUROC 0.88)'
    """
    from ebmlab.metrics import auroc

    ax = axes_or_new(ax)
    values = [scores_in, *scores_out.values()]
    low = min(float(v.min()) for v in values)
    high = max(float(v.max()) for v in values)
    edges = torch.linspace(low, high + 1e-9, bins + 1).numpy()
    ax.hist(scores_in.detach().cpu().numpy(), bins=edges, alpha=0.5, density=True,
            label="in-distribution")
    for name, s in scores_out.items():
        ax.hist(s.detach().cpu().numpy(), bins=edges, alpha=0.5, density=True,
                label=f"{name} (AUROC {auroc(scores_in, s):.2f})")
    ax.set_xlabel("score (higher = in-distribution)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return ax
