"""scikit-learn's 8×8 handwritten digits as image tensors (shipped with scikit-learn, offline)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["digits", "DIGITS_SPLITS"]

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
