r"""Evaluation metrics: accuracy, calibration, out-of-distribution scores and curves, sample MMD.

Conventions: OOD scores are *higher for in-distribution* inputs (the in-distribution set is
the positive class of the ROC and precision-recall curves), as in Hendrycks & Gimpel 2017 and
Liu et al. 2020. :func:`energy_score` is :math:`-F(x) = \operatorname{logsumexp}` of the logits
and :func:`softmax_score` the largest softmax probability. Every function takes tensors and
returns a Python float, except the per-input scores, which return tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "accuracy",
    "expected_calibration_error",
    "reliability",
    "auroc",
    "aupr",
    "fpr_at_tpr",
    "energy_score",
    "softmax_score",
    "mmd",
]


def _check_1d(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if value.ndim != 1 or value.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (N,); got {tuple(value.shape)}")
    if not value.is_floating_point():
        value = value.double()
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds non-finite values")
    return value.detach()


def _check_labels(labels: object, n: int, num_classes: int, name: str = "labels") -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape (N,) = ({n},); got {tuple(labels.shape)}")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError(f"{name} must hold whole class indices")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"{name} must hold class indices in 0 .. {num_classes - 1}")
    return labels.detach().long()


def _check_probs(probs: object) -> Tensor:
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        got = probs.dtype if isinstance(probs, Tensor) else type(probs).__name__
        raise TypeError(f"probs must be a floating torch.Tensor (N, C); got {got}")
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with N >= 1, C >= 2; got "
                         f"{tuple(probs.shape)}")
    probs = probs.detach()
    if bool(((probs < 0) | (probs > 1)).any()) or not bool(
        torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-4)
    ):
        raise ValueError("probs must be probabilities: entries in [0, 1], rows summing to 1 "
                         "(apply softmax to logits first)")
    return probs


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Return the fraction of correct predictions.

    Args:
        predictions: predicted classes ``(N,)``, or scores ``(N, C)`` (logits or
            probabilities, of which the arg-max is taken).
        labels: true classes ``(N,)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.metrics.accuracy(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
        0.5
    """
    if not isinstance(predictions, Tensor):
        raise TypeError(f"predictions must be a torch.Tensor; got {type(predictions).__name__}")
    if predictions.ndim == 2:
        predictions = predictions.argmax(-1)
    elif predictions.ndim != 1:
        raise ValueError(f"predictions must be (N,) classes or (N, C) scores; got "
                         f"{tuple(predictions.shape)}")
    if not isinstance(labels, Tensor) or labels.shape != predictions.shape:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape {tuple(predictions.shape)}; got {got}")
    if predictions.numel() == 0:
        raise ValueError("accuracy of an empty set is undefined; got N = 0")
    return float((predictions.long() == labels.long()).double().mean())


def reliability(probs: Tensor, labels: Tensor, num_bins: int = 15) -> dict[str, Tensor]:
    r"""Return the reliability table: count, accuracy and confidence per equal-width bin.

    The confidence of a prediction is its largest probability; bin :math:`m` holds the
    predictions with confidence in :math:`((m-1)/M, m/M]` (the first bin also holds 0).

    Returns:
        A dict of ``(num_bins,)`` tensors: ``edges`` (the upper edges), ``count``,
        ``accuracy`` and ``confidence`` (NaN in empty bins).
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an int >= 1; got {num_bins!r}")
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels).to(probs.dtype)
    # ceil(conf * M) - 1 puts conf in ((m-1)/M, m/M]; conf = 0 goes to the first bin.
    index = (torch.ceil(confidence * num_bins) - 1).clamp(0, num_bins - 1).long()
    count = torch.zeros(num_bins, dtype=probs.dtype).index_add_(0, index, torch.ones_like(correct))
    hits = torch.zeros(num_bins, dtype=probs.dtype).index_add_(0, index, correct)
    conf = torch.zeros(num_bins, dtype=probs.dtype).index_add_(0, index, confidence)
    safe = count.clamp_min(1)
    nan = torch.full_like(count, math.nan)
    edges = torch.arange(1, num_bins + 1, dtype=probs.dtype) / num_bins
    return {
        "edges": edges,
        "count": count,
        "accuracy": torch.where(count > 0, hits / safe, nan),
        "confidence": torch.where(count > 0, conf / safe, nan),
    }


def expected_calibration_error(probs: Tensor, labels: Tensor, num_bins: int = 15) -> float:
    r"""Return the expected calibration error with ``num_bins`` equal-width confidence bins.

    :math:`\mathrm{ECE} = \sum_m \frac{|B_m|}{N}\,\lvert \mathrm{acc}(B_m) -
    \mathrm{conf}(B_m)\rvert`, where :math:`B_m` holds the predictions whose confidence (the
    largest probability) lies in :math:`((m-1)/M, m/M]`.

    Args:
        probs: predicted probabilities ``(N, C)`` (rows sum to 1).
        labels: true classes ``(N,)``.
        num_bins: the number of bins M (15, as in Guo et al.).

    Raises:
        ValueError: if ``probs`` is not a probability table or ``labels`` do not fit it.

    References:
        Naeini, Cooper & Hauskrecht, "Obtaining Well Calibrated Probabilities Using Bayesian
        Binning", AAAI 2015; Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
        Networks", ICML 2017, arXiv:1706.04599.

    Example:
        >>> import torch, ebmlab as eb
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
        >>> round(eb.metrics.expected_calibration_error(probs, torch.tensor([0, 1])), 4)
        0.35
    """
    table = reliability(probs, labels, num_bins)
    count = table["count"]
    gap = (table["accuracy"] - table["confidence"]).abs()
    return float(torch.where(count > 0, gap * count, torch.zeros_like(count)).sum() / count.sum())


def auroc(scores_in: Tensor, scores_out: Tensor) -> float:
    r"""Return the area under the ROC curve separating in- from out-of-distribution scores.

    :math:`P(s_{in} > s_{out}) + \tfrac12 P(s_{in} = s_{out})` over all pairs (the
    Mann-Whitney statistic), computed by sorting: O(N log N). Higher scores must mean
    in-distribution (0.5 is chance, 1 perfect separation).

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.metrics.auroc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]))
        0.875
    """
    s_in, s_out = _check_1d(scores_in, "scores_in"), _check_1d(scores_out, "scores_out")
    dtype = torch.promote_types(s_in.dtype, s_out.dtype)
    s_in, s_out = s_in.to(dtype), s_out.to(dtype)
    ordered = torch.sort(s_out).values
    below = torch.searchsorted(ordered, s_in, right=False)  # out-scores < each in-score
    below_or_tied = torch.searchsorted(ordered, s_in, right=True)
    wins = below.double().sum() + 0.5 * (below_or_tied - below).double().sum()
    return float(wins / (s_in.numel() * s_out.numel()))


def fpr_at_tpr(scores_in: Tensor, scores_out: Tensor, tpr: float = 0.95) -> float:
    r"""Return the false-positive rate at the threshold that keeps a fraction ``tpr`` of inputs.

    The threshold :math:`t` is the largest score with at least ``tpr`` of the
    in-distribution scores :math:`\ge t` (the :math:`\lceil tpr \cdot N_{in}\rceil`-th largest);
    the result is the fraction of out-of-distribution scores :math:`\ge t`: FPR95 for the
    default. Equal to the first point of scikit-learn's ``roc_curve`` with TPR ≥ ``tpr``.

    Example:
        >>> import torch, ebmlab as eb
        >>> s_in = torch.arange(20.0)  # thresholding at 1.0 keeps 19/20 = 95 %
        >>> eb.metrics.fpr_at_tpr(s_in, torch.tensor([-1.0, 0.5, 1.0, 7.0]))
        0.5
    """
    s_in, s_out = _check_1d(scores_in, "scores_in"), _check_1d(scores_out, "scores_out")
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be a number in (0, 1]; got {tpr!r}")
    n = s_in.numel()
    k = max(1, math.ceil(tpr * n - 1e-9))  # the tolerance keeps 0.95 * 100 at 95
    threshold = torch.sort(s_in, descending=True).values[k - 1]
    return float((s_out.to(threshold.dtype) >= threshold).double().mean())


def aupr(scores_in: Tensor, scores_out: Tensor) -> float:
    r"""Return the area under the precision-recall curve, in-distribution as the positive class.

    Average precision, :math:`\sum_n (R_n - R_{n-1}) P_n` over the distinct thresholds, the
    definition of scikit-learn's ``average_precision_score`` (no interpolation).

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.metrics.aupr(torch.tensor([3.0, 1.0]), torch.tensor([2.0]))  # (1 + 2/3) / 2
        0.8333333333333333
    """
    s_in, s_out = _check_1d(scores_in, "scores_in"), _check_1d(scores_out, "scores_out")
    dtype = torch.promote_types(s_in.dtype, s_out.dtype)
    scores = torch.cat([s_in.to(dtype), s_out.to(dtype)])
    positive = torch.cat([torch.ones(s_in.numel()), torch.zeros(s_out.numel())]).double()
    order = torch.sort(scores, descending=True, stable=True).indices
    scores, positive = scores[order], positive[order]
    tp = positive.cumsum(0)
    seen = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # The last position of each run of tied scores is one threshold of the curve.
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tp, seen = tp[last], seen[last]
    precision, recall = tp / seen, tp / s_in.numel()
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((steps * precision).sum())


def energy_score(logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    r"""Return the energy score :math:`-F(x) = T \log \sum_y e^{\mathrm{logit}_y / T}`, ``(N,)``.

    The negated free energy of the classifier read as an EBM: high for in-distribution inputs.

    References:
        Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020,
        arXiv:2010.03759.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.metrics.energy_score(torch.zeros(1, 4))  # log 4
        tensor([1.3863])
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        temperature > 0 and math.isfinite(temperature)
    ):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    return temperature * torch.logsumexp(logits.detach() / temperature, dim=-1)


def softmax_score(logits: Tensor) -> Tensor:
    r"""Return the maximum softmax probability :math:`\max_y p(y|x)`, ``(N,)``.

    References:
        Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", ICLR 2017, arXiv:1610.02136.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.metrics.softmax_score(torch.tensor([[0.0, 0.0]]))
        tensor([0.5000])
    """
    _check_logits(logits)
    return torch.softmax(logits.detach(), dim=-1).max(dim=-1).values


def _check_logits(logits: object) -> None:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"logits must be a floating torch.Tensor (N, C); got {got}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C); got {tuple(logits.shape)}")


def mmd(samples: Tensor, reference: Tensor, *, bandwidth: float | None = None) -> float:
    r"""Return the unbiased squared kernel MMD between samples and reference data (flattened).

    The kernel is Gaussian, :math:`k(a, b) = \exp(-\lVert a - b\rVert^2 / (2\sigma^2))` on the
    flattened rows (pixels, for images), with :math:`\sigma` the median pairwise distance of
    ``reference`` unless ``bandwidth`` is given; the estimator is the unbiased U-statistic
    (it can be slightly negative when the two sets have the same law). O(N²) memory: use a
    few thousand rows at most.

    Args:
        samples: ``(N, *shape)``, at least 2 rows.
        reference: ``(M, *shape)``, at least 2 rows, e.g. held-out data.
        bandwidth: the kernel width :math:`\sigma`.

    References:
        Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 2012.

    Example:
        >>> import torch, ebmlab as eb
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
        >>> abs(eb.metrics.mmd(a, b)) < 0.02, eb.metrics.mmd(a + 3, b) > 0.5
        (True, True)
    """
    for value, name in ((samples, "samples"), (reference, "reference")):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor; got {type(value).__name__}")
        if value.ndim < 1 or value.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows; got shape {tuple(value.shape)}")
    a, b = samples.detach().flatten(1), reference.detach().flatten(1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"samples rows have {a.shape[1]} entries but reference rows {b.shape[1]}; expected "
            "equal shapes"
        )
    a, b = a.double(), b.double()
    d_bb = torch.cdist(b, b).pow(2)
    if bandwidth is None:
        off = d_bb[~torch.eye(b.shape[0], dtype=torch.bool)]
        sigma2 = float(off.sqrt().median()) ** 2
    else:
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not (
            bandwidth > 0
        ):
            raise ValueError(f"bandwidth must be a number > 0; got {bandwidth!r}")
        sigma2 = float(bandwidth) ** 2
    n, m = a.shape[0], b.shape[0]

    def mean_off_diagonal(d2: Tensor, size: int) -> Tensor:
        k = torch.exp(-d2 / (2 * sigma2))
        return (k.sum() - k.diagonal().sum()) / (size * (size - 1))

    k_aa = mean_off_diagonal(torch.cdist(a, a).pow(2), n)
    k_bb = mean_off_diagonal(d_bb, m)
    k_ab = torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma2)).mean()
    return float(k_aa + k_bb - 2 * k_ab)
