"""Joint (y, z) inference through eb.infer on a LatentEnergy."""

import pytest
import torch

import ebmlab as eb


class Linear(eb.LatentEnergy):
    """E(x, y, z) = ‖y − A z − x‖² + ‖z − c‖²: the unique joint minimum is z = c, y = A c + x."""

    y_shape, z_shape = (3,), (2,)

    def __init__(self):
        super().__init__()
        self.a = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -0.4]])
        self.c = torch.tensor([0.7, -1.2])

    def forward(self, y, z, x=None):
        x = 0 if x is None else x
        return ((y - z @ self.a.T - x) ** 2).sum(-1) + ((z - self.c) ** 2).sum(-1)


def test_joint_inference_recovers_the_known_minimum(generator):
    energy = Linear()
    x = torch.randn(4, 3, generator=generator)
    res = eb.infer(energy, x=x, num_starts=6, generator=generator, solver="lbfgs", gtol=1e-9)
    assert res.z is not None and res.z.shape[:2] == res.y.shape[:2]
    assert res.count.tolist() == [1, 1, 1, 1]  # convex: one minimum each
    torch.testing.assert_close(res.z[:, 0], energy.c.expand(4, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.best, energy.c @ energy.a.T + x, atol=1e-6, rtol=0)
    assert (res.energy[:, 0] < 1e-10).all()


def test_joint_inference_on_the_ellipse_lands_on_it(generator):
    ellipse = eb.energies.Ellipse()
    res = eb.infer(ellipse, num_starts=12, generator=generator, solver="lbfgs", gtol=1e-8,
                   return_trajectory=True)
    y, z = res.y[0, res.valid[0]], res.z[0, res.valid[0]]
    # E(y, z) = 0 exactly on the decoded ellipse: every joint minimum is y = decode(z)
    torch.testing.assert_close(y, ellipse.decode(z).detach(), atol=1e-5, rtol=0)
    assert res.trajectory.shape[1:] == (1, 12, 2)


def test_joint_inference_respects_the_z_domain(generator):
    box = eb.Box([0.5], [1.0])
    res = eb.infer(eb.energies.Ellipse(), num_starts=8, z_domain=box, generator=generator,
                   domain=eb.Box([-3.0, -3.0], [3.0, 3.0]))
    z = res.z[res.valid]
    assert ((z >= 0.5) & (z <= 1.0)).all()


def test_joint_inference_needs_z_shape():
    class NoShapes(eb.LatentEnergy):
        def forward(self, y, z, x=None):
            return ((y - z) ** 2).sum(-1)

    with pytest.raises(ValueError, match="z_shape is needed"):
        eb.infer(NoShapes(), y_shape=(2,))
    res = eb.infer(NoShapes(), y_shape=(2,), z_shape=(2,), num_starts=2, max_steps=50)
    assert res.z.shape[-1] == 2
    with pytest.raises(ValueError, match="z_shape is"):
        eb.infer(eb.energies.Ellipse(), z_shape=(2,))
