"""eb.load_run / eb.save_energy / eb.load_energy: round trips are bit-identical, nothing pickled."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import ebmlab as eb
from ebmlab.cli import main
from ebmlab.training.checkpoint import read_checkpoint

CONFIG = """
seed = 0
num_steps = 4
batch_size = 32
output = "{out}"
log_every = 2
dtype = "{dtype}"

[energy]
{energy}

[data]
name = "{data}"
num = 64

[loss]
name = "energy_loss"

[optimizer]
name = "adam"
lr = 0.01
"""


@pytest.fixture
def trained(tmp_path):
    """Train a tiny run from the CLI; return its folder."""

    def make(energy='name = "mlp"\nhidden = [8]', data="eight_gaussians", dtype="float32"):
        path = tmp_path / "c.toml"
        out = tmp_path / "run"
        path.write_text(CONFIG.format(out=out.as_posix(), energy=energy, data=data,
                                      dtype=dtype))
        old = torch.get_default_dtype()
        try:
            assert main(["train", str(path), "--no-progress"]) == 0
        finally:
            torch.set_default_dtype(old)
        return out

    return make


def _same(a, b, y, x=None):
    with torch.no_grad():
        return bool((a(y, x) == b(y, x)).all())


def test_load_run_returns_the_trained_energy_config_and_history(trained):
    run_dir = trained()
    old = torch.get_default_dtype()
    try:
        run = eb.load_run(run_dir)
    finally:
        torch.set_default_dtype(old)
    assert run.step == 4 and run.config["num_steps"] == 4 and run.path == run_dir
    assert run.history.records[-1]["step"] == 4 and run.history["loss"]
    _, tensors, _ = read_checkpoint(run_dir)
    for name, value in run.energy.state_dict().items():
        assert torch.equal(value, tensors[f"model.{name}"])
    assert not run.energy.training


@pytest.mark.parametrize("case", ["mlp", "ellipse"])
def test_save_and_load_energy_round_trip_bit_identical(trained, tmp_path, case):
    if case == "mlp":
        run_dir = trained()
        y = torch.randn(16, 2, dtype=torch.float32)
    else:
        run_dir = trained('name = "ellipse"\nnum_z = 12', "ellipse", "float64")
        y = torch.randn(16, 2, dtype=torch.float64)
    old = torch.get_default_dtype()
    try:
        run = eb.load_run(run_dir)
        path = eb.save_energy(run.energy, tmp_path / "exported")
        assert path.name == "exported.safetensors"
        again = eb.load_energy(path)  # rebuilt from the JSON's [energy] table
    finally:
        torch.set_default_dtype(old)
    assert type(again) is type(run.energy)
    assert _same(run.energy, again, y)
    # A plain state dict: no prefixes, loadable without ebmlab's help.
    plain = load_file(path)
    assert set(plain) == set(run.energy.state_dict())
    fresh = eb.load_energy(path)  # and again: the rebuilt one carries its config too
    eb.save_energy(fresh, tmp_path / "twice")
    assert _same(eb.load_energy(tmp_path / "twice.safetensors"), run.energy, y)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == "ebmlab-energy" and meta["config"]["energy"]["name"] == case
    assert all(v["shape"] == list(plain[k].shape) for k, v in meta["tensors"].items())


def test_a_custom_energy_loads_into_a_template(tmp_path):
    torch.manual_seed(0)
    energy = eb.energies.MLPEnergy(3, hidden=(5,))
    path = eb.save_energy(energy, tmp_path / "custom.safetensors")
    with pytest.raises(ValueError, match="saved without a config"):
        eb.load_energy(path)
    again = eb.load_energy(path, eb.energies.MLPEnergy(3, hidden=(5,)))
    assert _same(energy, again, torch.randn(7, 3, dtype=energy.net[0].weight.dtype))
    with pytest.raises(ValueError, match="does not fit|shape"):
        eb.load_energy(path, eb.energies.MLPEnergy(3, hidden=(6,)))
    with pytest.raises(ValueError, match="nothing is cast"):
        eb.load_energy(path, eb.energies.MLPEnergy(3, hidden=(5,)).to(torch.float16))


def test_damaged_files_give_clear_errors(tmp_path):
    path = eb.save_energy(eb.energies.MLPEnergy(2, hidden=(4,)), tmp_path / "e")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="not a safetensors file"):
        eb.load_energy(path, eb.energies.MLPEnergy(2, hidden=(4,)))
    with pytest.raises(FileNotFoundError):
        eb.load_energy(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        eb.load_run(tmp_path)
    with pytest.raises(TypeError, match="nn.Module"):
        eb.save_energy(lambda y: y, tmp_path / "f")


def test_nan_free_json(tmp_path):
    # Energies with infinite hyper-parameters (FreeEnergy's beta = inf) are written as JSON.
    grid = eb.latent.Grid(0.0, 2 * math.pi, 8, periodic=True)
    free = eb.FreeEnergy(eb.energies.Ellipse((1.0, 1.0)), grid)
    path = eb.save_energy(free, tmp_path / "free")
    again = eb.load_energy(path, eb.FreeEnergy(eb.energies.Ellipse((2.0, 2.0)), grid))
    assert _same(free, again, torch.randn(5, 2))
