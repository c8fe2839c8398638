"""The manifold of predictions: y̌(z) = argmin_y E(x, y, z) for every z of a latent set."""

import math

import pytest
import torch

import ebmlab as eb


class EllipseWithoutDecoder(eb.LatentEnergy):
    """The ellipse energy with no ``decode``: the manifold must be found by inference."""

    y_shape, z_shape = (2,), (1,)

    def __init__(self):
        super().__init__()
        self.inner = eb.energies.Ellipse(w=(2.0, 1.5))

    def forward(self, y, z, x=None):
        return self.inner(y, z)


def test_manifold_by_decoder_and_by_inference_agree(generator):
    grid = eb.latent.Grid(0.0, 2 * math.pi, 12, periodic=True)
    closed = eb.manifold(eb.energies.Ellipse(), grid)
    assert closed.shape == (1, 12, 2)
    z = grid.points()
    torch.testing.assert_close(closed[0], torch.cat([2 * z.cos(), 1.5 * z.sin()], -1))
    inferred = eb.manifold(EllipseWithoutDecoder(), grid, generator=generator, solver="lbfgs")
    # a convex quadratic in y: inference converges to gtol = 1e-5 on ‖∇‖ = 2‖y − d‖
    torch.testing.assert_close(inferred, closed, atol=1e-4, rtol=0)


def test_manifold_of_the_horn_has_one_curve_per_input(generator):
    horn = eb.energies.Horn()
    grid = eb.latent.Grid(0.0, 2 * math.pi, 16, periodic=True)
    x = torch.tensor([[0.0], [0.5], [1.0]])
    m = eb.manifold(horn, grid, x=x)
    assert m.shape == (3, 16, 2)
    z = grid.points()
    f = horn.f(x).detach()
    torch.testing.assert_close(m[1], f[1] * torch.cat([z.cos(), z.sin()], -1))


def test_manifold_rejects_minimize_and_non_latent():
    with pytest.raises(TypeError, match="finite set"):
        eb.manifold(eb.energies.Ellipse(), eb.latent.Minimize((1,)))
    with pytest.raises(TypeError, match="LatentEnergy"):
        eb.manifold(eb.energies.DoubleWell(2), eb.latent.Grid(0.0, 1.0, 3))
