"""Resume only the same run: the checkpoint's fingerprint of the configuration is checked."""

from __future__ import annotations

import logging

import pytest
import torch

import ebmlab as eb
from ebmlab.training import CheckpointError


def _run(folder, num_steps=20, lr=1e-2, optimizer=torch.optim.Adam, resume=True, seed=0):
    torch.manual_seed(0)
    model = eb.energies.MLPEnergy(2, hidden=(8,))
    data = eb.data.eight_gaussians(256, generator=torch.Generator().manual_seed(0))
    eb.fit(model, data, "contrastive_divergence", optimizer=optimizer(model.parameters(), lr=lr),
           num_steps=num_steps, batch_size=64, checkpoint_dir=folder, checkpoint_every=10,
           log_every=5, progress=False, resume=resume, seed=seed)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_changed_lr_is_refused_naming_lr(tmp_path):
    _run(tmp_path, num_steps=10)
    with pytest.raises(ValueError, match=r"\blr \(checkpoint 0.01, now 0.02\)"):
        _run(tmp_path, num_steps=20, lr=2e-2)


def test_changed_seed_and_data_are_named(tmp_path):
    _run(tmp_path, num_steps=10)
    with pytest.raises(ValueError, match="seed"):
        _run(tmp_path, num_steps=20, seed=1)


def test_same_configuration_continues_bit_identically(tmp_path, caplog):
    reference = _run(tmp_path / "ref", num_steps=20)
    _run(tmp_path / "split", num_steps=10)
    with caplog.at_level(logging.INFO, logger="ebmlab.training"):
        resumed = _run(tmp_path / "split", num_steps=20)
    assert "resuming from step 10" in caplog.text
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ebmlab.training"):
        _run(tmp_path / "split", num_steps=20)
    assert "already complete" in caplog.text


def test_force_continues_and_another_optimiser_is_a_configuration_error(tmp_path, caplog):
    _run(tmp_path, num_steps=10)
    with pytest.raises(ValueError, match="optimizer") as info:
        _run(tmp_path, num_steps=20, optimizer=torch.optim.SGD)
    assert not isinstance(info.value, KeyError)
    with caplog.at_level(logging.WARNING, logger="ebmlab.training"):
        _run(tmp_path, num_steps=20, optimizer=torch.optim.SGD, resume="force")
    assert "force" in caplog.text
    assert eb.training.read_checkpoint(tmp_path)[0] == 20


def test_bad_resume_value_is_refused(tmp_path):
    with pytest.raises(ValueError, match="resume"):
        _run(tmp_path, resume="yes")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)
