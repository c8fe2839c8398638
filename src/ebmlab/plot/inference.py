"""Plots of inference results: how many minima the starts found, as starts are added."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ebmlab.inference.result import Inference
from ebmlab.plot.figure import axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["coverage"]


def coverage(result: Inference, b: int = 0, *, ax: Axes | None = None) -> Axes:
    """Plot the minima found against the number of starts for input ``b`` (a rarefaction curve).

    The curve is read from ``result.first_hit``: n starts (in the order they were drawn) had
    found ``(first_hit < n).sum()`` minima. A curve still rising at the right end means more
    starts would find more minima; the dashed line is ``estimated_count`` (Chao1).

    Example:
        >>> import torch, ebmlab as eb
        >>> res = eb.infer(eb.energies.DoubleWell(3), num_starts=64,
        ...                domain=eb.Box([-2.0] * 3, [2.0] * 3),
        ...                generator=torch.Generator().manual_seed(0))
        >>> ax = eb.plot.coverage(res)
        >>> ax.get_xlabel()
        'starts'
    """
    if result.first_hit is None or result.hits is None:
        raise ValueError("result has no first_hit/hits (it does not come from eb.infer's search)")
    if not 0 <= b < result.count.shape[0]:
        raise ValueError(f"b must be in [0, {result.count.shape[0]}); got {b}")
    ax = axes_or_new(ax)
    first = result.first_hit[b, result.valid[b]].detach().cpu()
    n = int(result.hits[b].sum()) + int(result.num_unconverged[b]) + int(result.num_diverged[b])
    n = max(n, int(first.max()) + 1 if first.numel() else 1)
    starts = torch.arange(1, n + 1)
    found = (first.unsqueeze(0) < starts.unsqueeze(1)).sum(1)
    ax.step(starts.numpy(), found.numpy(), where="post", label="minima found")
    if result.estimated_count is not None:
        ax.axhline(float(result.estimated_count[b]), ls="--", color="gray",
                   label=f"Chao1 estimate {float(result.estimated_count[b]):.1f}")
    ax.set_xscale("log")
    ax.set_xlabel("starts")
    ax.set_ylabel("distinct minima")
    ax.legend(loc="lower right", fontsize=8)
    return ax
