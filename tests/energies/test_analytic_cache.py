"""GaussianMixture's cached closed-form constants follow every change of its parameters."""

import torch

import ebmlab as eb


def autograd_reference(energy, y):
    y = y.detach().clone().requires_grad_(True)
    e = energy.forward(y)
    (g,) = torch.autograd.grad(e.sum(), y)
    return e.detach(), g


def assert_matches(energy, y):
    e, g = energy.energy_and_grad(y)
    e_ref, g_ref = autograd_reference(energy, y)
    # the expanded quadratic form cancels terms of size |y|^2/s^2: allow 1e-10 relative
    torch.testing.assert_close(e, e_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)


def test_closed_form_matches_autograd_isotropic_and_not():
    y = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    assert_matches(eb.energies.GaussianMixture.ring(8, scale=0.3), y)
    assert_matches(eb.energies.GaussianMixture([[0.0, 0.0], [1.0, 2.0]], [0.5, 1.5]), y)


def test_cache_follows_an_optimiser_step_then_sampling():
    gm = eb.energies.GaussianMixture.ring(8, scale=0.3)
    y = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    gm.energy_and_grad(y)  # fills the cache
    opt = torch.optim.Adam(gm.parameters(), lr=0.1)
    gm.forward(y).mean().backward()
    opt.step()
    assert_matches(gm, y)
    # one Langevin step uses the updated gradient: y' = y - h grad F(y) + sqrt(2h) noise
    h = 0.01
    chain = eb.sample(gm, y, eb.samplers.Langevin(h), 1, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    expected = y - h * autograd_reference(gm, y)[1] + (2 * h) ** 0.5 * noise
    torch.testing.assert_close(chain.samples[0], expected, rtol=1e-9, atol=1e-9)


def test_cache_follows_reassignment_and_in_place_edits():
    gm = eb.energies.GaussianMixture.ring(4, scale=0.5)
    y = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    gm.energy_and_grad(y)
    with torch.no_grad():
        gm.means.mul_(2.0)
    assert_matches(gm, y)
    gm.log_scales = torch.nn.Parameter(gm.log_scales.detach() - 0.2)
    assert_matches(gm, y)
    gm.energy_and_grad(y)
    with torch.no_grad():
        gm.log_scales[0, 0] += 0.3  # breaks isotropy: the general path must be taken
    assert_matches(gm, y)


def test_under_torch_compile_the_constants_are_computed_in_the_graph(monkeypatch):
    # What a compiled step sees: no cache read or write (a data-pointer key would break the
    # graph) and the general quadratic form, still equal to autograd after a training step.
    gm = eb.energies.GaussianMixture.ring(8, scale=0.3)
    y = torch.randn(32, 2, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    gm.forward(y).mean().backward()
    opt.step()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert_matches(gm, y)
    assert getattr(gm, "_cache", None) is None


def test_frozen_energy_and_grad_gives_the_same_numbers():
    for dtype in (torch.float32, torch.float64):
        y = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3
        for gm in (eb.energies.GaussianMixture.ring(8, scale=0.3),
                   eb.energies.GaussianMixture([[0.0, 0.0], [1.0, 2.0]], [0.5, 1.5])):
            gm = gm.to(dtype)
            frozen = gm.frozen_energy_and_grad()
            for a, b in zip(frozen(y), gm.energy_and_grad(y), strict=True):
                assert torch.equal(a, b)
