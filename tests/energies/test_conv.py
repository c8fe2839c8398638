"""ConvNet / ConvEnergy: shapes from 8x8 to 32x32, smoothness, spectral norm, no batch norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlab.energies.conv import ConvEnergy, ConvNet


@pytest.mark.parametrize("channels, size", [(1, 8), (3, 16), (3, 28), (3, 32)])
def test_shapes(channels, size):
    f = ConvEnergy(channels, size, widths=(4, 8), hidden=8)
    y = torch.rand(2, channels, size, size)
    assert f(y).shape == (2,)
    assert f.y_shape == (channels, size, size)
    net = ConvNet(channels, size, 10, widths=(4, 8), hidden=8)
    assert net(y).shape == (2, 10)


def test_gradient_flows_to_every_parameter_and_to_the_image():
    f = ConvEnergy(1, 8, widths=(3,), hidden=4)
    y = torch.rand(2, 1, 8, 8, requires_grad=True)
    f(y).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())
    assert torch.autograd.gradcheck(lambda v: f.forward(v), (torch.rand(1, 1, 8, 8,
                                                                        requires_grad=True),))


def test_no_batch_norm_and_each_image_independent_of_the_batch():
    f = ConvEnergy(1, 8, widths=(4,), hidden=8)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in f.modules())
    y = torch.rand(5, 1, 8, 8)
    assert torch.allclose(f(y)[:2], f(y[:2]))


def test_spectral_norm_bounds_each_layer():
    net = ConvNet(1, 8, 1, widths=(4,), hidden=8, spectral_norm=True)
    net.train()
    for _ in range(30):  # power iterations run in training forward passes
        net(torch.rand(2, 1, 8, 8))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            assert torch.linalg.matrix_norm(m.weight, ord=2) < 1.05


def test_state_dict_round_trip():
    a = ConvEnergy(1, 8, widths=(4,), hidden=8, spectral_norm=True)
    b = ConvEnergy(1, 8, widths=(4,), hidden=8, spectral_norm=True)
    b.load_state_dict(a.state_dict())
    y = torch.rand(3, 1, 8, 8)
    a.eval(), b.eval()
    assert torch.equal(a(y), b(y))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ConvEnergy(1, 8, activation="relu"), "smooth"),
        (lambda: ConvEnergy(0, 8), "channels"),
        (lambda: ConvEnergy(1, 8, widths=()), "widths"),
        (lambda: ConvEnergy(1, 8)(torch.rand(2, 1, 16, 16)), r"\(B, 1, 8, 8\)"),
        (lambda: ConvEnergy(1, 8)(torch.rand(2, 1, 8, 8), x=torch.rand(2, 1)), "unconditional"),
    ],
)
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_conv_net_first_stage_keeps_the_full_resolution() -> None:
    net = ConvNet(1, 8, 10, widths=(4, 8))
    convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1]
    big = ConvNet(3, 32, 10, widths=(4, 8, 8))
    x = torch.zeros(2, 3, 32, 32)
    assert big.layers[:-4](x).shape == (2, 8, 8, 8)  # 32 -> 16 -> 8
