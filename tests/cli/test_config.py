"""cli/config.py: every name of a config is looked up in its registry."""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.cli.config import ConfigError, build, resolve_config

BASE = {
    "output": "runs/x",
    "energy": {"name": "mlp", "hidden": [4]},
    "data": {"name": "eight_gaussians", "num": 16},
    "loss": {"name": "energy_loss"},
}


def _build(**tables):
    return build(resolve_config({**BASE, **tables}))


def test_every_registered_energy_name_is_accepted_and_unknown_ones_listed():
    built = _build(energy={"name": "gaussian_mixture", "means": [[0.0, 0.0], [1.0, 1.0]]})
    assert isinstance(built["energy"], eb.energies.GaussianMixture)
    with pytest.raises(ConfigError, match="gaussian_mixture"):
        _build(energy={"name": "nope"})


def test_a_latent_energy_is_trained_through_its_free_energy():
    built = _build(energy={"name": "ellipse", "num_z": 12})
    assert isinstance(built["energy"], eb.FreeEnergy)
    # the config's default w, not the class's
    assert built["energy"].latent_energy.w.tolist() == [1.0, 1.0]


def test_regularizers_come_from_the_registry():
    built = _build(regularizer={"name": "gradient_penalty", "weight": 0.5})
    spec = eb.training.resolve_loss(built["regularizer"])
    assert spec.inputs == ("energy", "y", "x")
    y = torch.randn(8, 2)
    value = built["regularizer"](energy=built["energy"], y=y, x=None)
    assert torch.allclose(value, 0.5 * eb.losses.gradient_penalty(built["energy"], y))
    with pytest.raises(ConfigError, match="no option 'scale'"):
        _build(regularizer={"name": "energy_l2", "scale": 1.0})


def test_a_negative_source_that_needs_a_domain_says_so():
    with pytest.raises(ConfigError, match=r"'uniform' needs a \[domain\] table"):
        _build(negatives={"name": "uniform"})
