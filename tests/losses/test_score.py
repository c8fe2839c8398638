"""Score matching on Gaussian energies: closed forms, and gradients that agree in expectation.

For the quadratic energy F(y) = (y - mu)' A (y - mu) / 2 (``eb.energies.Quadratic``), with
S = (A + A')/2 and r = y - mu, the score is -S r and:

- exact:     L = |S r|^2 / 2 - tr S;
- sliced:    L = (v'S r)^2 / 2 - v'S v  (ssm),  |S r|^2 / 2 - v'S v  (ssm_vr),
             with E[v v'] = I, so E_v[L] = exact;
- denoising: L = |S (r + sigma e) - e / sigma|^2 / 2, e ~ N(0, I), so
             E_e[L] = |S r|^2 / 2 + tr((sigma S - I/sigma)^2) / 2
                    = E_e[exact(y + sigma e)] + d / (2 sigma^2)        (Vincent 2011),
  hence the denoising gradient equals, in expectation, the exact gradient on noisy data.
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab import losses

D = 3
A0 = [[2.0, 0.4, -0.3], [0.4, 1.0, 0.2], [-0.3, 0.2, 0.7]]
MU0 = [0.5, -1.0, 0.25]

# Replicate-based checks: R independent gradient estimates g_r (fresh projections or noise,
# same data). |mean_r g_r - target| < Z sd_r / sqrt(R) + 1e-10 per component; with R = 64 the
# standardised mean is t-distributed with 63 dof (each g_r is a mean over 64 examples, so
# close to normal) and P(|t_63| > 6) ~ 1e-7, so over the 12 components and 6 estimators
# below the family-wise false-failure rate is below 1e-5.
# (The 1e-10 covers components whose estimator happens to be deterministic, sd = 0.)
R = 64
Z = 6.0


def _quadratic() -> eb.energies.Quadratic:
    return eb.energies.Quadratic(A0, mean=MU0)


def _sym(q: eb.energies.Quadratic) -> torch.Tensor:
    return 0.5 * (q.precision + q.precision.T)


def _exact_closed_form(q, y):
    s = _sym(q)
    sr = (y - q.mean) @ s
    return 0.5 * sr.square().sum(-1) - torch.diagonal(s).sum()


def _denoising_closed_form(q, y, sigma):
    s = _sym(q)
    sr = (y - q.mean) @ s
    m = sigma * s - torch.eye(D) / sigma
    return 0.5 * sr.square().sum(-1) + 0.5 * (m * m).sum()


def _smoothed_exact_closed_form(q, y, sigma):
    # E_e[exact(y + sigma e)] = |S r|^2/2 + sigma^2 tr(S^2)/2 - tr S.
    s = _sym(q)
    sr = (y - q.mean) @ s
    return 0.5 * sr.square().sum(-1) + 0.5 * sigma**2 * (s * s).sum() - torch.diagonal(s).sum()


def _grads(q, loss):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, (q.precision, q.mean))])


def test_exact_matches_closed_form_per_example():
    q = _quadratic()
    y = torch.randn(16, D)
    got = losses.exact_score_matching(q, y, reduction="none")
    assert got.shape == (16,)
    expected = _exact_closed_form(q, y)
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-12)
    assert _grads(q, got.mean()).tolist() == pytest.approx(
        _grads(q, expected.mean()).tolist(), abs=1e-12
    )


def test_exact_trace_matches_brute_force_hessian_on_a_non_quadratic_energy():
    # F(y) = sum_i sin(y_i) y_{i+1}^2 + |y|^4 / 4: a full, y-dependent Hessian.
    def f(y, x=None):
        return (torch.sin(y[:, :-1]) * y[:, 1:] ** 2).sum(-1) + 0.25 * (y * y).sum(-1) ** 2

    energy = eb.FunctionEnergy(f)
    y = torch.randn(5, 4)
    got = losses.exact_score_matching(energy, y, reduction="none")
    expected = []
    for row in y:
        g = torch.autograd.functional.jacobian(lambda u: f(u[None])[0], row)
        h = torch.autograd.functional.hessian(lambda u: f(u[None])[0], row)
        expected.append(0.5 * g.square().sum().item() - torch.trace(h).item())
    assert got.tolist() == pytest.approx(expected, abs=1e-11)


def test_exact_gradient_vanishes_at_the_gaussian_mle():
    # For a Gaussian model the score-matching estimator is the MLE (Hyvarinen 2005, the
    # multivariate Gaussian example):
    # mu = sample mean, A = inverse of the (biased) sample covariance. The gradient of the
    # mean loss there is zero up to rounding.
    y = torch.randn(200, D) @ torch.tensor(A0) + torch.tensor(MU0)
    mean = y.mean(0)
    cov = (y - mean).T @ (y - mean) / y.shape[0]
    q = eb.energies.Quadratic(torch.linalg.inv(cov), mean=mean)
    g = _grads(q, losses.exact_score_matching(q, y))
    assert g.abs().max().item() < 1e-10
    q_off = eb.energies.Quadratic(torch.linalg.inv(cov) * 1.1, mean=mean)
    assert _grads(q_off, losses.exact_score_matching(q_off, y)).abs().max().item() > 1e-2


def test_conditional_energy_and_gradient_to_x():
    # F(y, x) = |y - x|^2 / (2 s^2): score matching gives |y - x|^2 / (2 s^4) - d / s^2.
    s = 0.5
    energy = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1) / (2 * s * s))
    y, x = torch.randn(6, 2), torch.randn(6, 2, requires_grad=True)
    got = losses.exact_score_matching(energy, y, x, reduction="none")
    expected = ((y - x) ** 2).sum(-1) / (2 * s**4) - 2 / s**2
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-12)
    got.sum().backward()
    assert torch.allclose(x.grad, -(y - x).detach() / s**4, rtol=0, atol=1e-12)
    gp = losses.gradient_penalty(energy, y, x, reduction="none")
    assert gp.tolist() == pytest.approx((((y - x) / s**2) ** 2).sum(-1).tolist(), abs=1e-12)
    sliced = losses.sliced_score_matching(
        energy, y, x, sigma=0.0, num_projections=3, generator=torch.Generator().manual_seed(1)
    )
    assert sliced.item() == pytest.approx(expected.mean().item(), abs=1e-12)  # S = I / s^2


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("estimator", ["ssm", "ssm_vr"])
def test_sliced_matches_closed_form_with_the_same_projections(projection, estimator):
    q = _quadratic()
    y = torch.randn(8, D)
    m = 5
    got = losses.sliced_score_matching(
        q,
        y,
        sigma=0.0,
        num_projections=m,
        projection=projection,
        estimator=estimator,
        generator=torch.Generator().manual_seed(7),
        reduction="none",
    )
    # The projections are documented as one (M, B, *y_shape) draw from the generator.
    g = torch.Generator().manual_seed(7)
    if projection == "gaussian":
        v = torch.randn((m, 8, D), generator=g)
    else:
        v = 2 * torch.randint(0, 2, (m, 8, D), generator=g).double() - 1
    s = _sym(q).detach()
    sr = (y - q.mean.detach()) @ s  # (B, D)
    vsv = torch.einsum("mbi,ij,mbj->mb", v, s, v)
    first = 0.5 * (v * sr).sum(-1) ** 2 if estimator == "ssm" else 0.5 * sr.square().sum(-1)
    expected = (first - vsv).mean(0)
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-12)


def test_sliced_vr_with_rademacher_is_exact_for_a_diagonal_hessian():
    # v'Sv = sum_i S_ii v_i^2 = tr S when v_i = +-1 and S is diagonal: no variance at all.
    q = eb.energies.Quadratic(torch.diag(torch.tensor([0.5, 2.0, 3.0])), mean=MU0)
    y = torch.randn(10, D)
    got = losses.sliced_score_matching(q, y, sigma=0.0, num_projections=1,
                                       projection="rademacher",
                                       generator=torch.Generator().manual_seed(3))
    assert got.item() == pytest.approx(losses.exact_score_matching(q, y).item(), abs=1e-12)


@pytest.mark.parametrize("estimator", ["ssm", "ssm_vr"])
def test_sliced_orthogonal_matches_closed_form_with_the_same_projections(estimator):
    # Documented draws: per frame of k = min(M left, D) directions, a randn (B, D, k), its
    # reduced QR with the columns' signs set by diag(R) > 0, times sqrt(D). M = 5, D = 3:
    # a full frame, then two more directions.
    q = _quadratic()
    y = torch.randn(8, D)
    m = 5
    got = losses.sliced_score_matching(q, y, sigma=0.0, num_projections=m,
                                       projection="orthogonal",
                                       estimator=estimator,
                                       generator=torch.Generator().manual_seed(7),
                                       reduction="none")
    g = torch.Generator().manual_seed(7)
    frames = []
    for k in (3, 2):
        qq, r = torch.linalg.qr(torch.randn((8, D, k), generator=g))
        qq = qq * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        frames.append(qq.permute(2, 0, 1))
    v = torch.cat(frames) * math.sqrt(D)  # (M, B, D)
    assert torch.allclose(v[:3].transpose(0, 1) @ v[:3].permute(1, 2, 0),
                          D * torch.eye(D).expand(8, D, D), atol=1e-12)  # sqrt(D) orthonormal
    s = _sym(q).detach()
    sr = (y - q.mean.detach()) @ s
    vsv = torch.einsum("mbi,ij,mbj->mb", v, s, v)
    first = 0.5 * (v * sr).sum(-1) ** 2 if estimator == "ssm" else 0.5 * sr.square().sum(-1)
    assert got.tolist() == pytest.approx((first - vsv).mean(0).tolist(), abs=1e-12)


def test_sliced_orthogonal_with_d_projections_is_exact_for_any_hessian():
    # The mean of v'Sv over a full sqrt(D)-orthonormal frame is tr(Q'SQ) = tr S.
    q = _quadratic()  # off-diagonal A
    y = torch.randn(10, D)
    exact = losses.exact_score_matching(q, y, reduction="none")
    got = losses.sliced_score_matching(q, y, sigma=0.0, num_projections=D,
                                       generator=torch.Generator().manual_seed(3),
                                       reduction="none")
    assert got.tolist() == pytest.approx(exact.tolist(), abs=1e-10)
    # The default M is min(D, 2): two orthogonal projections, the same draws as M = 2.
    a = losses.sliced_score_matching(q, y, generator=torch.Generator().manual_seed(4))
    b = losses.sliced_score_matching(q, y, num_projections=2, projection="orthogonal",
                                     generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item()
    # sigma: the loss at y + sigma * randn(y.shape), drawn before the projections.
    g = torch.Generator().manual_seed(6)
    noisy = y + 0.3 * torch.randn(y.shape, generator=g)
    want = losses.sliced_score_matching(q, noisy, sigma=0.0, generator=g)
    got = losses.sliced_score_matching(q, y, sigma=0.3, generator=torch.Generator().manual_seed(6))
    assert got.item() == want.item()
    # In 2-D the default is exact.
    q2 = eb.energies.Quadratic([[2.0, 0.7], [0.7, 1.0]])
    y2 = torch.randn(6, 2)
    assert losses.sliced_score_matching(
        q2, y2, sigma=0.0, generator=torch.Generator().manual_seed(5)
    ).item() == pytest.approx(losses.exact_score_matching(q2, y2).item(), abs=1e-10)


def test_denoising_matches_closed_form_with_the_same_noise():
    q = _quadratic()
    y = torch.randn(8, D)
    sigma = 0.3
    got = losses.denoising_score_matching(
        q, y, sigma=sigma, generator=torch.Generator().manual_seed(5), reduction="none"
    )
    e = torch.randn((8, D), generator=torch.Generator().manual_seed(5))
    s = _sym(q).detach()
    expected = 0.5 * ((y + sigma * e - q.mean.detach()) @ s - e / sigma).square().sum(-1)
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-11)


def test_loss_values_match_their_expectations(generator):
    # Per-example differences L_i - E[L_i | y_i] are independent with mean 0; |mean| <
    # 6 sd / sqrt(n) fails with probability ~2e-9 per check (n = 4000, CLT).
    q = _quadratic()
    n = 4000
    y = torch.randn(n, D, generator=generator) + torch.tensor(MU0)
    exact = _exact_closed_form(q, y).detach()
    sigma = 0.5

    def check(values, expected):
        diff = values.detach() - expected
        assert abs(diff.mean().item()) < 6 * diff.std().item() / math.sqrt(n) + 1e-12

    for projection in ("rademacher", "gaussian"):
        for estimator in ("ssm", "ssm_vr"):
            check(
                losses.sliced_score_matching(
                    q, y, sigma=0.0, projection=projection, estimator=estimator,
                    generator=generator,
                    reduction="none",
                ),
                exact,
            )
    check(
        losses.denoising_score_matching(q, y, sigma=sigma, generator=generator, reduction="none"),
        _denoising_closed_form(q, y, sigma).detach(),
    )


def _replicate_gradients(q, make_loss):
    return torch.stack([_grads(q, make_loss()) for _ in range(R)])


def _assert_mean_close(samples, target):
    mean, sd = samples.mean(0), samples.std(0)
    bound = Z * sd / math.sqrt(samples.shape[0]) + 1e-10
    assert ((mean - target).abs() <= bound).all(), (mean - target, bound)


@pytest.mark.parametrize(
    ("projection", "estimator"),
    [("rademacher", "ssm_vr"), ("rademacher", "ssm"), ("gaussian", "ssm_vr"), ("gaussian", "ssm"),
     ("orthogonal", "ssm_vr"), ("orthogonal", "ssm")],
)
def test_sliced_gradient_agrees_with_exact_gradient_in_expectation(generator, projection,
                                                                   estimator):
    q = _quadratic()
    y = torch.randn(64, D, generator=generator) + torch.tensor(MU0)
    target = _grads(q, losses.exact_score_matching(q, y))
    samples = _replicate_gradients(
        q,
        lambda: losses.sliced_score_matching(
            q, y, sigma=0.0, projection=projection, estimator=estimator, generator=generator
        ),
    )
    _assert_mean_close(samples, target)
    # Sanity: the estimator is genuinely random (so the check above is not vacuous).
    assert samples.std(0).max().item() > 1e-6


def test_denoising_gradient_agrees_with_exact_gradient_on_noisy_data_in_expectation(generator):
    q = _quadratic()
    sigma = 0.4
    y = torch.randn(64, D, generator=generator) + torch.tensor(MU0)
    # Closed form of E_e[grad exact(y + sigma e)] (the smoothed exact loss, see module doc).
    target = _grads(q, _smoothed_exact_closed_form(q, y, sigma).mean())
    # It equals the gradient of the denoising closed form: they differ by d / (2 sigma^2).
    same = _grads(q, _denoising_closed_form(q, y, sigma).mean())
    assert same.tolist() == pytest.approx(target.tolist(), abs=1e-12)
    dsm = _replicate_gradients(
        q, lambda: losses.denoising_score_matching(q, y, sigma=sigma, generator=generator)
    )
    _assert_mean_close(dsm, target)
    # And the exact loss evaluated on noisy copies of the data has the same expected gradient.
    def exact_on_noisy():
        noisy = y + sigma * torch.randn(y.shape, generator=generator)
        return losses.exact_score_matching(q, noisy)

    _assert_mean_close(_replicate_gradients(q, exact_on_noisy), target)


def test_score_losses_gradcheck_through_energy_parameters():
    # A non-quadratic energy with parameters as gradcheck inputs; the projections and noise
    # are re-drawn from a freshly seeded generator at every evaluation.
    y = torch.randn(4, 2)

    def energy_from(p, c):
        def f(u, x=None):
            r = u - c
            return 0.5 * ((r @ (p.T @ p)) * r).sum(-1) + 0.1 * (u**4).sum(-1)

        return f

    p = torch.tensor([[1.2, 0.3], [-0.2, 0.9]], requires_grad=True)
    c = torch.tensor([0.1, -0.4], requires_grad=True)
    checks = [
        lambda p, c: losses.exact_score_matching(energy_from(p, c), y, reduction="none"),
        lambda p, c: losses.sliced_score_matching(
            energy_from(p, c), y, num_projections=2, projection="gaussian", estimator="ssm",
            generator=torch.Generator().manual_seed(0),
        ),
        lambda p, c: losses.denoising_score_matching(
            energy_from(p, c), y, sigma=0.3, generator=torch.Generator().manual_seed(0)
        ),
        lambda p, c: losses.gradient_penalty(energy_from(p, c), y, reduction="sum"),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (p, c))


def test_same_generator_state_gives_identical_results():
    q = _quadratic()
    y = torch.randn(8, D)
    for fn in (
        lambda g: losses.sliced_score_matching(q, y, num_projections=2, generator=g),
        lambda g: losses.denoising_score_matching(q, y, sigma=0.2, generator=g),
    ):
        a = fn(torch.Generator().manual_seed(11))
        b = fn(torch.Generator().manual_seed(11))
        assert torch.equal(a, b)


def test_energy_linear_in_y_has_zero_hessian_not_an_error():
    # F = w'y: score -w, Hessian 0. Exact and ssm_vr give |w|^2 / 2; d/dw = w.
    w = torch.tensor([0.5, -2.0], requires_grad=True)
    energy = eb.FunctionEnergy(lambda y, x: y @ w)
    y = torch.randn(4, 2)
    for loss in (
        losses.exact_score_matching(energy, y),
        losses.sliced_score_matching(energy, y, generator=torch.Generator().manual_seed(0)),
    ):
        assert loss.item() == pytest.approx(0.5 * (w * w).sum().item(), abs=1e-14)
        (g,) = torch.autograd.grad(loss, w)
        assert g.tolist() == pytest.approx(w.tolist(), abs=1e-14)
    # A constant energy has a zero score: every score loss is 0.
    constant = eb.FunctionEnergy(lambda y, x: torch.zeros(y.shape[0]))
    assert losses.exact_score_matching(constant, y).item() == 0.0
    assert losses.gradient_penalty(constant, y).item() == 0.0


def test_y_requiring_grad_keeps_its_history():
    # Differentiating through y itself (e.g. y produced by a network) is allowed.
    q = eb.energies.Quadratic(torch.eye(2))
    t = torch.tensor(2.0, requires_grad=True)
    y = t * torch.ones(1, 2)
    losses.gradient_penalty(q, y).backward()  # |grad F|^2 = |y|^2 = 2 t^2 -> d/dt = 4t
    assert t.grad.item() == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda q, y: losses.exact_score_matching("q", y), TypeError, "energy must be"),
        (lambda q, y: losses.exact_score_matching(q, y.long()), TypeError, "y must have"),
        (lambda q, y: losses.exact_score_matching(q, y, reduction="avg"), ValueError, "reduct"),
        (lambda q, y: losses.denoising_score_matching(q, y, sigma=0.0), ValueError, "sigma"),
        (lambda q, y: losses.denoising_score_matching(q, y, sigma=-1), ValueError, "sigma"),
        (
            lambda q, y: losses.sliced_score_matching(q, y, num_projections=0),
            ValueError,
            "num_projections",
        ),
        (
            lambda q, y: losses.sliced_score_matching(q, y, sigma=-0.1),
            ValueError,
            "sigma",
        ),
        (
            lambda q, y: losses.sliced_score_matching(q, y, projection="sphere"),
            ValueError,
            "projection",
        ),
        (
            lambda q, y: losses.sliced_score_matching(q, y, estimator="vr"),
            ValueError,
            "estimator",
        ),
        (
            lambda q, y: losses.sliced_score_matching(q, y, generator=0),
            TypeError,
            "generator",
        ),
        (
            lambda q, y: losses.denoising_score_matching(
                q, y.to("meta"), sigma=1.0, generator=torch.Generator()
            ),
            ValueError,
            "generator is on cpu but y is on meta",
        ),
        (
            lambda q, y: losses.exact_score_matching(
                eb.FunctionEnergy(lambda u, x: u.sum(-1)), y, torch.zeros(3, 1)
            ),
            ValueError,
            "batch sizes differ",
        ),
        (
            lambda q, y: losses.exact_score_matching(lambda u, x: u, y),
            ValueError,
            r"energy returned shape \(4, 3\)",
        ),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call(_quadratic(), torch.randn(4, D))
