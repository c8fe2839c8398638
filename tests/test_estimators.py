"""ImplicitRegressor: the modes of multi-valued targets, shapes, likelihood, scikit-learn rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import ebmlab as eb  # noqa: E402
from ebmlab.estimators import ImplicitRegressor  # noqa: E402
from ebmlab.inference import SOLVERS  # noqa: E402

# Small enough for a check run in seconds on one thread, large enough to learn the branches.
TINY = dict(hidden_layer_sizes=(8,), n_counter_examples=8, n_starts=4, inference_steps=5,
            max_iter=3, batch_size=16, langevin_steps=2)
SMALL = dict(hidden_layer_sizes=(32, 32), n_counter_examples=32, batch_size=128,
             learning_rate=3e-3, langevin_steps=3)


@pytest.fixture(scope="module")
def branches() -> tuple[np.ndarray, np.ndarray]:
    x, y = eb.data.two_branch(600, x_max=4.0, generator=torch.Generator().manual_seed(0))
    return x.double().numpy(), y[:, 0].double().numpy()


@pytest.fixture(scope="module")
def fitted(branches) -> ImplicitRegressor:
    x, y = branches
    return ImplicitRegressor(max_iter=400, random_state=0, **SMALL).fit(x, y)


def test_predict_modes_recovers_both_branches(fitted):
    xs = np.array([[1.0], [2.25], [4.0]])
    modes = fitted.predict_modes(xs, max_modes=2)
    assert modes.y.shape == (3, 2, 1)
    found = np.sort(modes.y[..., 0].double().numpy(), axis=1)
    truth = np.sqrt(xs[:, 0])
    # Noise sd 0.05 and 600 pairs: a branch within 0.15 of sqrt(x) is the branch, the average
    # 0 that least squares would give is more than 1 away.
    np.testing.assert_allclose(found, np.stack([-truth, truth], 1), atol=0.15)
    assert bool(modes.valid.all())
    assert fitted.predict(xs).shape == (3,)


def test_predict_is_a_mode_and_batch_invariant(fitted):
    xs = np.linspace(0.5, 4.0, 9)[:, None]
    full = fitted.predict(xs)
    parts = np.concatenate([fitted.predict(xs[:4]), fitted.predict(xs[4:])])
    np.testing.assert_array_equal(full, parts)
    np.testing.assert_allclose(np.abs(full), np.sqrt(xs[:, 0]), atol=0.15)


def test_score_prefers_true_pairs(fitted, branches):
    x, y = branches
    shuffled = np.random.default_rng(0).permutation(y)
    assert fitted.score(x, y) > fitted.score(x, shuffled) + 0.5
    log_p = fitted.log_prob(x[:5], y[:5])
    assert log_p.shape == (5,) and np.isfinite(log_p).all()


def test_sample_shapes_and_law(fitted):
    draws = fitted.sample(np.array([[4.0], [1.0]]), n_samples=400, random_state=0)
    assert draws.shape == (2, 400)
    # Both branches are drawn (a fair coin in the data): each holds at least 25 % of 400
    # draws unless the model lost one (binomial sd 10 around 200).
    for row, root in zip(draws, (2.0, 1.0), strict=True):
        near = np.abs(np.abs(row) - root) < 0.3
        assert near.mean() > 0.8
        assert 0.25 < (row > 0).mean() < 0.75
    again = fitted.sample(np.array([[4.0], [1.0]]), n_samples=400, random_state=0)
    np.testing.assert_array_equal(draws, again)


def test_multi_output_shapes():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, generator=gen).numpy()
    y = np.stack([x[:, 0], -x[:, 1]], 1)
    model = ImplicitRegressor(**TINY, random_state=0).fit(x, y)
    assert model.n_outputs_ == 2 and model.n_features_in_ == 3
    assert model.predict(x[:5]).shape == (5, 2)
    assert model.predict_modes(x[:5]).y.shape[::2] == (5, 2)
    assert model.sample(x[:5], n_samples=3).shape == (5, 3, 2)
    assert np.isfinite(model.score(x, y))
    assert model.y_bounds_[0].shape == (2,)
    column = ImplicitRegressor(**TINY, random_state=0).fit(x, y[:, :1])
    assert column.predict(x[:5]).shape == (5, 1)


def test_high_dimensional_targets_use_importance_sampling():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 2, generator=gen).numpy()
    y = np.tile(x[:, :1], (1, 3))
    model = ImplicitRegressor(**TINY, random_state=0).fit(x, y)
    assert model.predict(x[:4]).shape == (4, 3)
    assert np.isfinite(model.score(x, y))
    assert model.sample(x[:2], n_samples=5, random_state=0).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="at most 2 target columns"):
        ImplicitRegressor(**TINY, loss="ml").fit(x, y)


@pytest.mark.parametrize("loss", ["info_nce", "nce", "ml"])
def test_losses_train(loss, branches):
    x, y = branches
    model = ImplicitRegressor(**{**TINY, "max_iter": 20}, loss=loss, random_state=0).fit(x, y)
    assert len(model.history_) > 0
    assert np.isfinite(model.history_["loss"]).all()
    assert np.isfinite(model.predict(x[:3])).all()


def test_fit_is_deterministic_and_leaves_global_state(branches):
    x, y = branches
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a = ImplicitRegressor(**TINY, random_state=3).fit(x, y).predict(x[:10])
    assert torch.equal(before, torch.random.get_rng_state())
    assert torch.get_default_dtype() == torch.float64
    b = ImplicitRegressor(**TINY, random_state=3).fit(x, y).predict(x[:10])
    np.testing.assert_array_equal(a, b)


def test_clone_pipeline_grid_search(branches):
    x, y = branches
    model = ImplicitRegressor(**TINY, random_state=0)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "energy_")
    pipe = make_pipeline(StandardScaler(), ImplicitRegressor(**TINY, random_state=0))
    assert pipe.fit(x, y).predict(x[:4]).shape == (4,)
    search = GridSearchCV(ImplicitRegressor(**TINY, random_state=0),
                          {"n_counter_examples": [4, 8]}, cv=2)
    search.fit(x, y)
    assert search.best_params_["n_counter_examples"] in (4, 8)
    assert np.isfinite(search.best_score_)


def test_sklearn_estimator_checks():
    # Every check runs; none is skipped (see the class docstring on the poor_score tag).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(ImplicitRegressor(**TINY, random_state=0))


def test_bad_input_gets_sklearn_errors(branches):
    x, y = branches
    with pytest.raises(NotFittedError):
        ImplicitRegressor().predict(x)
    model = ImplicitRegressor(**TINY, random_state=0)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(x, y[:-1])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, y)
    model.fit(x, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(bad)
    with pytest.raises(ValueError, match="y must have shape"):
        model.score(x, y[:-1])
    with pytest.raises(ValueError, match="max_modes"):
        model.predict_modes(x, max_modes=0)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(x, n_samples=0)


@pytest.mark.parametrize(
    ("param", "value"),
    [("loss", "mse"), ("inference", "newton"), ("max_iter", 0), ("learning_rate", -1.0),
     ("inferred_fraction", 2.0), ("n_counter_examples", 1.5), ("learning_rate", "fast"),
     ("learning_rate_schedule", "linear")],
)
def test_bad_parameters_refused_at_fit(param, value, branches):
    x, y = branches
    model = ImplicitRegressor(**{**TINY, param: value})  # the constructor only stores
    assert getattr(model, param) == value
    with pytest.raises(ValueError, match=param):
        model.fit(x, y)


@pytest.mark.parametrize("inference", ["dfo", "langevin"])
def test_other_inference_solvers(inference, branches):
    if inference not in SOLVERS:
        pytest.skip(f"eb.inference.SOLVERS has no {inference!r} solver yet (issue 11)")
    x, y = branches
    model = ImplicitRegressor(**{**TINY, "max_iter": 20}, inference=inference, random_state=0)
    assert model.fit(x, y).predict(x[:3]).shape == (3,)


def test_energy_is_an_ebmlab_energy_in_data_units(fitted):
    energy = fitted.energy_
    assert isinstance(energy, eb.Energy)
    y = torch.tensor([[2.0], [0.0]], dtype=torch.float32)
    x = torch.tensor([[4.0], [4.0]], dtype=torch.float32)
    e = energy(y, x)
    assert e.shape == (2,) and bool(e[0] < e[1])  # the branch is lower than the average


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["implicit_regression.py", "implicit_policy.py"])
def test_examples_run(script, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_demo_section(tmp_path):
    from ebmlab.demo import implicit

    lines = implicit.run(tmp_path, quick=True)
    assert any("particle task" in line for line in lines)
    assert (tmp_path / "implicit_modes.png").exists()
    assert (tmp_path / "implicit_particle.png").exists()


def test_temperature_head_gradient_equals_autograd():
    # The ML energy writes out its gradient (no autograd graph per inference step).
    from ebmlab.estimators._common import _TemperedMLP

    torch.manual_seed(0)
    net = _TemperedMLP(2, 5, (16, 16), "silu")
    torch.nn.init.normal_(net.temperature[2].weight, std=0.5)  # a non-trivial temperature
    y, x = torch.randn(7, 2), torch.randn(7, 5)
    e, g = net.energy_and_grad(y, x)
    e_ref, g_ref = eb.Energy.energy_and_grad(net, y, x)
    assert torch.equal(e, e_ref)
    assert torch.allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="conditional"):
        net.energy_and_grad(y)
