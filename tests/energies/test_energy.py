"""Energy contract additions: Energy.x_shape, FunctionEnergy(x_shape=), the batch-mixing check."""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.energy import check_rows_independent


def test_x_shape_is_checked_on_every_validated_call():
    f = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1), y_shape=(2,), x_shape=(2,))
    assert f.x_shape == (2,)
    torch.testing.assert_close(f(torch.ones(3, 2), torch.ones(3, 2)), torch.zeros(3))
    with pytest.raises(ValueError, match=r"x has shape \(3, 1\); FunctionEnergy expects"):
        f(torch.ones(3, 2), torch.ones(3, 1))
    assert eb.FunctionEnergy(lambda y, x: y.sum(-1)).x_shape is None  # undeclared: not checked


def test_rows_independent_accepts_row_wise_energies_and_refuses_mixing():
    def good(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        return ((y**2 - x) ** 2).sum(-1)

    y, x = torch.randn(5, 1), torch.randn(5, 1)
    check_rows_independent(good, y, x, good(y, x), "good")
    xb = x[:, 0]  # (B,): y**2 - x broadcasts to (B, B)
    with pytest.raises(ValueError, match="mixes the batch"):
        check_rows_independent(good, y, xb, good(y, xb), "good")

    def centred(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        return ((y - y.mean(0)) ** 2).sum(-1)  # depends on the whole batch

    with pytest.raises(ValueError, match="mixes the batch"):
        check_rows_independent(centred, y, None, centred(y, None), "centred")
    check_rows_independent(good, y[:1], x[:1], good(y[:1], x[:1]), "good")  # one row: no check
