r"""``ClassifierEnergy``: a classifier's logits read as energies, E(x, y) = -logits[y]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab._checks import check_positive_int, check_tensor
from ebmlab.energy import Energy

__all__ = ["ClassifierEnergy", "InputEnergy", "check_class_labels"]


def check_class_labels(labels: Tensor, num_classes: int | None, name: str) -> None:
    """Raise unless ``labels`` holds whole numbers in ``0 .. num_classes - 1``.

    One pass and one host synchronisation: for public entry points, never for hot loops.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must hold class indices (integer or float); got {labels.dtype}")
    top = math.inf if num_classes is None else num_classes - 1
    bad = (labels < 0) | (labels > top)
    if labels.is_floating_point():
        bad = bad | (labels != labels.round())
    if bool(bad.any()):
        first = labels[bad].flatten()[:3].tolist()
        bound = "0 .. C - 1" if num_classes is None else f"0 .. {num_classes - 1}"
        raise ValueError(
            f"{name} must hold class labels, whole numbers in {bound}; got values such as {first}"
        )


def _label_index(labels: Tensor) -> Tensor:
    """(B,) or (B, 1) class labels (any dtype) -> (B, 1) long indices for ``gather``."""
    return labels.reshape(-1, 1).long()


class ClassifierEnergy(Energy):
    r"""Read a classifier ``net(x) -> logits (B, C)`` as the conditional energy of the label.

    :math:`E(x, y) = -\mathrm{logits}_y(x)`, so the Gibbs distribution of the label at
    :math:`\beta = 1` is the softmax, :math:`p(y|x) = e^{-E(x, y)} / \sum_{y'} e^{-E(x, y')}`,
    and inference over the finite label set (``eb.argmin_discrete(clf, clf.candidates(),
    x=images)``) returns the arg-max class. Marginalising the label exactly, as a latent
    variable is marginalised, gives an energy of the inputs alone,
    :math:`F(x) = -\log \sum_y e^{-E(x, y)} = -\operatorname{logsumexp}_y \mathrm{logits}_y(x)`
    (:meth:`marginal`): read as :math:`p(x) \propto e^{-F(x)}`, the same network is a
    generative model of its inputs (JEM).

    Following the library's argument order the label is the inferred variable and comes
    first: ``clf(y, x=images)``. A label ``y`` is a floating tensor ``(B, 1)`` holding a class
    index (the library's answers are floating; :meth:`candidates` lists the C labels).

    Args:
        net: any module mapping inputs ``(B, *input_shape)`` to logits ``(B, C)``.
        num_classes: C; read from the output of the net's last ``nn.Linear`` (or ``nn.Conv``)
            layer when omitted.
        input_shape: the event shape of the inputs (e.g. ``(1, 8, 8)``), checked at the public
            entry points when given; taken from ``net.input_shape`` when the net has one.

    Raises:
        TypeError: if ``net`` is not a module.
        ValueError: if ``num_classes`` cannot be found or is below 2.

    References:
        LeCun, Chopra, Hadsell, Ranzato & Huang, "A Tutorial on Energy-Based Learning", 2006.
        Grathwohl, Wang, Jacobsen, Duvenaud, Norouzi & Swersky, "Your Classifier is Secretly an
        Energy Based Model and You Should Treat it Like One", ICLR 2020, arXiv:1912.03263.
        Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020,
        arXiv:2010.03759.

    Example:
        >>> import torch, ebmlab as eb
        >>> net = torch.nn.Linear(4, 3)
        >>> clf = eb.energies.ClassifierEnergy(net)
        >>> x = torch.randn(5, 4)
        >>> bool(torch.equal(clf.predict(x), net(x).argmax(-1)))
        True
        >>> found = eb.argmin_discrete(clf, clf.candidates(), x=x).best  # (5, 1) labels
        >>> bool(torch.equal(found.squeeze(-1).long(), clf.predict(x)))
        True
        >>> f = clf.marginal()  # F(x) = -logsumexp(logits)
        >>> bool(torch.allclose(f(x), -net(x).logsumexp(-1)))
        True
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int | None = None,
        *,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        if num_classes is None:
            num_classes = _output_width(net)
            if num_classes is None:
                raise ValueError(
                    f"cannot read the number of classes from {type(net).__name__} (no final "
                    "nn.Linear); pass num_classes="
                )
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        if input_shape is None:
            input_shape = getattr(net, "input_shape", None)
        self.input_shape = (
            None if input_shape is None else tuple(check_positive_int(int(s), "input_shape")
                                                   for s in input_shape)
        )
        self.net = net
        self.y_shape = (1,)

    def __repr__(self) -> str:
        return f"ClassifierEnergy({type(self.net).__name__}, num_classes={self.num_classes})"

    def check_inputs(self, x: object, name: str = "x") -> Tensor:
        """Return ``x`` if it is a floating ``(B, *input_shape)`` tensor; raise otherwise."""
        x = check_tensor(x, name)
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; the classifier expects (B, *input_shape) = "
                f"(B, {', '.join(map(str, self.input_shape))})"
            )
        return x

    def __call__(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("ClassifierEnergy is conditional: pass the inputs, clf(y, x=inputs)")
        self.check_inputs(x)
        check_tensor(y, "y")
        check_class_labels(y, self.num_classes, "y")
        return super().__call__(y, x)

    def logits(self, x: Tensor) -> Tensor:
        """Return the network's logits ``(B, C)`` (the negated energies of the C labels)."""
        out = self.net(x)
        if out.ndim != 2 or out.shape != (x.shape[0], self.num_classes):
            raise ValueError(
                f"net returned shape {tuple(out.shape)}; expected logits (B, C) = "
                f"({x.shape[0]}, {self.num_classes})"
            )
        return out

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return -self.logits(x).gather(1, _label_index(y)).squeeze(1)

    def energies(self, x: Tensor) -> Tensor:
        """Return :math:`E(x, y)` for every label, ``(B, C)`` (= ``-logits``)."""
        return -self.logits(self.check_inputs(x))

    def candidates(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Return the C labels as ``(C, 1)`` floating candidates for ``eb.argmin_discrete``."""
        if device is None:
            device = next((p.device for p in self.parameters()), None)
        labels = torch.arange(self.num_classes, device=device)
        return labels.to(dtype or torch.get_default_dtype()).unsqueeze(-1)

    def predict_proba(self, x: Tensor, *, beta: float = 1.0) -> Tensor:
        r"""Return :math:`p(y|x) = \mathrm{softmax}(-\beta E(x, \cdot))`, ``(B, C)``."""
        return torch.softmax(beta * self.logits(self.check_inputs(x)), dim=-1)

    def predict(self, x: Tensor) -> Tensor:
        """Return the lowest-energy class of each input, ``(B,)`` long (argmax of the logits)."""
        return self.logits(self.check_inputs(x)).argmax(dim=-1)

    def marginal(self) -> InputEnergy:
        """Return the energy of the inputs :math:`F(x) = -\\operatorname{logsumexp}_y` logits."""
        return InputEnergy(self)


class InputEnergy(Energy):
    r"""A classifier's energy of its inputs: the marginal :math:`F(x)` or, given a label, E(x, y).

    Here the input is the sampled variable, so it comes first: ``F(images)`` is
    :math:`-\operatorname{logsumexp}_y \mathrm{logits}_y`, the label marginalised, and
    ``F(images, x=labels)`` is the energy of the image given its class, :math:`E(x, y) =
    -\mathrm{logits}_y`, whose Langevin chains sample a class (``eb.sample(F, noise, kernel,
    x=labels)``). The label, as conditioning, is a floating ``(B,)`` or ``(B, 1)`` tensor of
    class indices. Both read the same network: the parameters are the classifier's.

    Args:
        classifier: the :class:`ClassifierEnergy` (see :meth:`ClassifierEnergy.marginal`).

    Example:
        >>> import torch, ebmlab as eb
        >>> clf = eb.energies.ClassifierEnergy(torch.nn.Linear(4, 3))
        >>> f, x = clf.marginal(), torch.randn(2, 4)
        >>> bool(torch.allclose(f(x, x=torch.tensor([0.0, 2.0])),
        ...                     clf(torch.tensor([[0.0], [2.0]]), x=x)))
        True
    """

    def __init__(self, classifier: ClassifierEnergy) -> None:
        super().__init__()
        if not isinstance(classifier, ClassifierEnergy):
            raise TypeError(
                f"classifier must be an eb.energies.ClassifierEnergy; got "
                f"{type(classifier).__name__}"
            )
        self.classifier = classifier
        self.y_shape = classifier.input_shape

    def __repr__(self) -> str:
        return f"InputEnergy({self.classifier!r})"

    @property
    def num_classes(self) -> int:
        """The number of classes C of the classifier."""
        return self.classifier.num_classes

    def __call__(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        self.classifier.check_inputs(y, "y")
        if x is not None:
            check_tensor(x, "x")
            if not (x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)):
                raise ValueError(
                    f"x (the class labels) must have shape (B,) or (B, 1); got {tuple(x.shape)}"
                )
            check_class_labels(x, self.classifier.num_classes, "x")
        return super().__call__(y, x)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        logits = self.classifier.logits(y)
        if x is None:
            return -torch.logsumexp(logits, dim=-1)
        return -logits.gather(1, _label_index(x)).squeeze(1)


def _output_width(net: nn.Module) -> int | None:
    """The net's ``num_outputs``, or the ``out_features`` of its last linear layer."""
    if isinstance(getattr(net, "num_outputs", None), int):
        return net.num_outputs
    last = None
    for module in net.modules():
        if isinstance(module, nn.Linear):
            last = module.out_features
        elif isinstance(module, nn.Conv2d | nn.Conv1d):
            last = module.out_channels
    return last
