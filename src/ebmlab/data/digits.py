"""scikit-learn's 8×8 handwritten digits as image tensors (shipped with scikit-learn, offline)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["digits", "shifted", "DIGITS_SPLITS"]

DIGITS_SPLITS = ("all", "train", "test")


def digits(
    split: str = "all",
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Return scikit-learn's 1,797 digits as ``(images, labels)``, images scaled to [0, 1].

    The 8×8 images of 4-bit grey levels (0..16) are divided by 16 and laid out as
    ``(N, 1, 8, 8)`` (channels first, as convolutions want); labels are ``(N,)`` long class
    indices 0..9. The data file ships with scikit-learn, so nothing is downloaded. The splits
    follow scikit-learn's classification example: ``"train"`` is the first half of the rows
    (898), ``"test"`` the second half (899), in the file's order (no shuffling).

    Args:
        split: ``"all"``, ``"train"`` or ``"test"``.
        dtype: floating dtype of the images (default: torch's default dtype).
        device: where the tensors live.

    Returns:
        ``(images, labels)``: ``(N, 1, 8, 8)`` floating and ``(N,)`` long.

    Raises:
        ValueError: if ``split`` is unknown.
        ImportError: if scikit-learn is not installed (``pip install ebmlab[sklearn]``).

    References:
        Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI, 1998;
        scikit-learn's ``load_digits``.

    Example:
        >>> import ebmlab as eb
        >>> images, labels = eb.data.digits("train")
        >>> images.shape, labels.shape, float(images.max()), int(labels[:10].sum())
        (torch.Size([898, 1, 8, 8]), torch.Size([898]), 1.0, 45)
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split must be one of {DIGITS_SPLITS}; got {split!r}")
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype; got {dtype}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is in the dev extra
        raise ImportError(
            "eb.data.digits needs scikit-learn (it ships the data): pip install 'ebmlab[sklearn]'"
        ) from err
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=dtype or torch.get_default_dtype()) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    half = images.shape[0] // 2
    rows = {"all": slice(None), "train": slice(0, half), "test": slice(half, None)}[split]
    images = images[rows].unsqueeze(1)  # (N, 8, 8) -> (N, 1, 8, 8)
    return images.to(device).contiguous(), labels[rows].to(device)


def shifted(images: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    r"""Return the images moved by every one-pixel shift (9 copies, zero fill), and their labels.

    The augmentation of scikit-learn's RBM digits example, extended to the diagonals: each
    image appears unshifted and moved by one pixel in each of the 8 directions, the uncovered
    row/column filled with zeros (the background). The copies are stacked shift by shift, so
    rows ``k * N .. (k + 1) * N`` hold shift ``k`` of all ``N`` images (shift 4 is the
    original); ``labels`` are repeated to match.

    Args:
        images: ``(N, C, H, W)``.
        labels: ``(N,)`` or ``None``.

    Returns:
        ``(9 N, C, H, W)`` images and ``(9 N,)`` labels (``None`` when none were given).

    Raises:
        ValueError: if ``images`` is not 4-D or ``labels`` is of another length.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 1.0
        >>> out, _ = shifted(x)
        >>> out.shape, out.sum(dim=(1, 2, 3)).tolist()
        (torch.Size([9, 1, 3, 3]), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        >>> out[0, 0]
        tensor([[1., 0., 0.],
                [0., 0., 0.],
                [0., 0., 0.]])
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, C, H, W); got {got}")
    if labels is not None and (not isinstance(labels, Tensor) or labels.shape != images.shape[:1]):
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must have shape (N,) = ({images.shape[0]},); got {got}")
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    copies = [padded[..., 1 - a : 1 - a + h, 1 - b : 1 - b + w]  # content moved by (a, b)
              for a in (-1, 0, 1) for b in (-1, 0, 1)]
    return torch.cat(copies).contiguous(), None if labels is None else labels.repeat(9)
