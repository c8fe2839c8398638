r"""Convolutional energies of images: ``ConvNet`` (logits or a scalar) and ``ConvEnergy`` F(y)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ebmlab._checks import check_positive_int
from ebmlab.energy import Energy

__all__ = ["ConvNet", "ConvEnergy", "SMOOTH_ACTIVATIONS"]

# Smooth activations only: Langevin sampling and gradient inference differentiate the energy
# in the image, and a kinked activation gives a piecewise-constant gradient field.
SMOOTH_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


class ConvNet(nn.Module):
    r"""A small convolutional network of images ``(B, C, H, W) -> (B, num_outputs)``.

    Each stage is two 3×3 convolutions, each followed by a smooth activation; the first stage
    works at the full resolution and every later stage starts with a stride-2 convolution
    while the feature map is larger than 4×4 (so 8×8 inputs go 8×8 → 4×4 with two stages, and
    32×32 ones 32 → 16 → 8 with three); then a hidden linear layer and the output layer.
    Convolving at full resolution first matters on small images: a stride-2 first layer on
    8×8 digits costs several points of test accuracy. There is no batch normalisation: it
    makes the energy of an image depend on the rest of the batch, which breaks Langevin
    sampling and EBM training (JEM's issue #13). With ``spectral_norm=True`` every layer's
    weight is divided by its largest singular value (power iteration), bounding the
    network's Lipschitz constant.

    Args:
        channels: image channels C.
        size: image height and width (square images; 8 to 32 are the intended range).
        num_outputs: width of the output, e.g. 10 logits for a classifier, 1 for an energy.
        widths: channels of each stage.
        hidden: width of the hidden linear layer.
        activation: one of ``silu``, ``softplus``, ``gelu``, ``elu``, ``tanh``.
        spectral_norm: apply spectral normalisation to every layer.

    Raises:
        ValueError: if a size is below 1 or the activation is unknown.

    Example:
        >>> import torch, ebmlab as eb
        >>> net = eb.energies.ConvNet(1, 8, 10, widths=(8, 16))
        >>> net(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        channels: int,
        size: int,
        num_outputs: int = 1,
        *,
        widths: Sequence[int] = (32, 64),
        hidden: int = 128,
        activation: str = "silu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.size = check_positive_int(size, "size")
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        widths = tuple(check_positive_int(w, "widths") for w in widths)
        if not widths:
            raise ValueError("widths must name at least one stage; got ()")
        hidden = check_positive_int(hidden, "hidden")
        if activation not in SMOOTH_ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(SMOOTH_ACTIVATIONS)} (smooth, for Langevin "
                f"sampling); got {activation!r}"
            )
        act = SMOOTH_ACTIVATIONS[activation]
        norm = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in, side = self.channels, self.size
        for k, w in enumerate(widths):
            stride = 2 if k > 0 and side > 4 else 1  # the first stage sees the full image
            layers += [norm(nn.Conv2d(c_in, w, 3, stride=stride, padding=1)), act()]
            layers += [norm(nn.Conv2d(w, w, 3, padding=1)), act()]
            side = (side - 1) // stride + 1  # the output side of a 3x3, padding-1 convolution
            c_in = w
        layers += [nn.Flatten(), norm(nn.Linear(c_in * side * side, hidden)), act()]
        layers.append(norm(nn.Linear(hidden, self.num_outputs)))
        self.layers = nn.Sequential(*layers)
        self.input_shape = (self.channels, self.size, self.size)
        self.is_spectral_norm = bool(spectral_norm)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class ConvEnergy(Energy):
    r"""An unconditional energy of images :math:`F(y)` computed by a :class:`ConvNet`.

    ``y`` is a batch of images ``(B, C, H, W)`` and the energy one scalar per image. Train it
    by short-run Langevin maximum likelihood (``eb.training.images.fit_image_energy``, or
    ``eb.fit`` with ``contrastive_divergence`` and replay-buffer negatives).

    Args:
        channels: image channels C.
        size: image height and width.
        widths, hidden, activation, spectral_norm: as for :class:`ConvNet`.

    References:
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models",
        NeurIPS 2019, arXiv:1903.08689. Nijkamp, Hill, Zhu & Wu, "Learning Non-Convergent
        Non-Persistent Short-Run MCMC Toward Energy-Based Model", NeurIPS 2019,
        arXiv:1904.09770.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.energies.ConvEnergy(1, 8, widths=(8,), hidden=16)
        >>> f(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        channels: int,
        size: int,
        *,
        widths: Sequence[int] = (32, 64),
        hidden: int = 128,
        activation: str = "silu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.net = ConvNet(channels, size, 1, widths=widths, hidden=hidden,
                           activation=activation, spectral_norm=spectral_norm)
        self.y_shape = self.net.input_shape

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if x is not None:
            raise ValueError("ConvEnergy is unconditional; got x, expected None")
        return self.net(y).squeeze(-1)

    def extra_repr(self) -> str:
        c, s, _ = self.y_shape
        return f"channels={c}, size={s}, spectral_norm={self.net.is_spectral_norm}"
